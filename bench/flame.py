"""A minimal flame graph (SVG) from py-spy's collapsed stacks, so no extra tool is needed."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from pathlib import Path

WIDTH = 1600
ROW = 16
MIN_SHARE = 0.002


@dataclass
class Node:
    """One frame of the merged call tree and how many samples passed through it."""

    name: str
    count: int = 0
    children: dict[str, Node] = field(default_factory=dict)


def tree(collapsed: str) -> Node:
    """Merge `frame;frame;... count` lines into one call tree."""
    root = Node("all")
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        root.count += count
        node = root
        for frame in stack.split(";"):
            node = node.children.setdefault(frame, Node(frame))
            node.count += count
    return root


def _depth(node: Node) -> int:
    return 1 + max((_depth(c) for c in node.children.values()), default=0)


def svg(collapsed: str, title: str) -> str:
    """An icicle-style flame graph; hover a box for its frame, samples and share."""
    root = tree(collapsed)
    total = max(root.count, 1)
    height = (_depth(root) + 2) * ROW
    boxes: list[str] = []
    limit = 10_000  # boxes drawn at most, so a huge profile stays a small file

    def draw(node: Node, x: float, depth: int) -> None:
        if len(boxes) >= limit or node.count / total < MIN_SHARE:
            return
        width = node.count / total * WIDTH
        y = (depth + 1) * ROW
        share = node.count / total
        hue = 20 + (hash(node.name.split(" ")[0]) % 40)
        label = escape(node.name if width > 7 * len(node.name) else node.name[: int(width / 7)])
        boxes.append(
            f"<g><title>{escape(node.name)} ({node.count} samples, {share:.1%})</title>"
            f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{ROW - 1}" '
            f'fill="hsl({hue},80%,60%)"/>'
            f'<text x="{x + 2:.1f}" y="{y + ROW - 4}" font-size="11">{label}</text></g>'
        )
        child_x = x
        for child in sorted(node.children.values(), key=lambda c: -c.count):
            draw(child, child_x, depth + 1)
            child_x += child.count / total * WIDTH

    draw(root, 0.0, 0)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'font-family="monospace"><text x="4" y="12" font-size="12">{escape(title)}</text>'
        + "".join(boxes)
        + "</svg>\n"
    )


def write_svg(collapsed_path: Path) -> Path:
    """Write `<name>.svg` next to a collapsed-stacks file and return its path."""
    out = collapsed_path.with_suffix(".svg")
    out.write_text(svg(collapsed_path.read_text(), collapsed_path.stem))
    return out
