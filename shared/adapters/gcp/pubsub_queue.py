"""Queue on Pub/Sub: JSON envelopes on a topic, a streaming-pull worker, a dead-letter topic."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as google_exceptions

from shared.adapters.gcp import clients
from shared.errors import ConfigurationError, InvalidArgument, Unavailable
from shared.ports.queue import Message

if TYPE_CHECKING:
    from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient
    from google.cloud.pubsub_v1.subscriber.futures import StreamingPullFuture
    from google.cloud.pubsub_v1.subscriber.message import Message as PubSubMessage

logger = logging.getLogger(__name__)

Handler = Callable[[Message], None]

# Pub/Sub refuses dead-letter policies below 5 attempts; fewer are enforced by this worker.
_MIN_POLICY_ATTEMPTS = 5
_MAX_ERROR_TEXT = 1000


class PubSubQueue:
    """Publish waits for the server's ack; `start` runs handlers on a streaming pull.

    A handler that returns acks its message; one that raises nacks it, so Pub/Sub delivers it
    again. After `max_attempts` deliveries the worker publishes the message to the dead-letter
    topic and acks it. The subscription also carries Pub/Sub's own dead-letter policy, which
    makes the service count delivery attempts (and catches messages whose worker died).
    """

    def __init__(
        self,
        project: str,
        topic: str,
        client: PublisherClient | None = None,
        *,
        subscriber: SubscriberClient | None = None,
        subscription: str | None = None,
        dead_letter_topic: str | None = None,
        workers: int = 2,
        max_attempts: int = 5,
        settle_seconds: float = 1.0,
        publish_timeout: float = 60.0,
    ) -> None:
        self.publisher = client if client is not None else clients.publisher_client()
        self._subscriber = subscriber
        self.project = project
        self.topic_path = self.publisher.topic_path(project, topic)
        self.dead_letter_path = self.publisher.topic_path(
            project, dead_letter_topic or f"{topic}-dead-letter"
        )
        self.subscription_name = subscription or f"{topic}-worker"
        self.workers = workers
        self.max_attempts = max_attempts
        self.settle_seconds = settle_seconds
        self.publish_timeout = publish_timeout
        self._handler: Handler | None = None
        self._future: StreamingPullFuture | None = None
        self._lock = threading.Condition()
        self._outstanding: set[str] = set()
        self._busy = 0
        self._last_activity = time.monotonic()
        self._attempts: dict[str, int] = {}
        self._dead: list[dict[str, object]] = []

    # --- publishing -------------------------------------------------------------------
    def publish(self, message: Message) -> None:
        data = json.dumps(message.to_json()).encode()
        with self._lock:
            self._outstanding.add(message.id)
            self._last_activity = time.monotonic()
        try:
            future = self.publisher.publish(
                self.topic_path, data, type=message.type, version=str(message.version)
            )
            future.result(timeout=self.publish_timeout)
        except Exception as exc:
            self._finished(message.id)
            raise _publish_error(self.topic_path, exc) from exc

    # --- resources --------------------------------------------------------------------
    @property
    def subscriber(self) -> SubscriberClient:
        if self._subscriber is None:
            self._subscriber = clients.subscriber_client()
        return self._subscriber

    @property
    def subscription_path(self) -> str:
        return str(self.subscriber.subscription_path(self.project, self.subscription_name))

    def create_resources(
        self, *, ack_deadline_seconds: int = 60, min_backoff_seconds: float | None = None
    ) -> None:
        """Create the topic, dead-letter topic and subscriptions if missing (Terraform's job in
        production; tests and `make run-cloud` call this). Idempotent."""
        _create_if_missing(lambda: self.publisher.create_topic(name=self.topic_path))
        _create_if_missing(lambda: self.publisher.create_topic(name=self.dead_letter_path))
        # A topic without a subscription drops what it receives: keep the dead letters.
        hold = self.subscriber.subscription_path(self.project, f"{self.subscription_name}-dead")
        _create_if_missing(
            lambda: self.subscriber.create_subscription(
                request={"name": hold, "topic": self.dead_letter_path}
            )
        )
        request: dict[str, Any] = {
            "name": self.subscription_path,
            "topic": self.topic_path,
            "ack_deadline_seconds": ack_deadline_seconds,
            "dead_letter_policy": {
                "dead_letter_topic": self.dead_letter_path,
                "max_delivery_attempts": max(self.max_attempts, _MIN_POLICY_ATTEMPTS),
            },
        }
        if min_backoff_seconds is not None:
            seconds, fraction = divmod(min_backoff_seconds, 1)
            backoff = {"seconds": int(seconds), "nanos": int(fraction * 1e9)}
            request["retry_policy"] = {"minimum_backoff": backoff}
        _create_if_missing(lambda: self.subscriber.create_subscription(request=request))

    # --- running handlers -------------------------------------------------------------
    def start(self, handler: Handler) -> None:
        """Open the streaming pull; messages published before it are delivered too."""
        if self._future is not None:
            return
        try:
            self.subscriber.get_subscription(request={"subscription": self.subscription_path})
        except google_exceptions.NotFound:
            self.create_resources()
        from google.cloud.pubsub_v1.subscriber.scheduler import ThreadScheduler
        from google.cloud.pubsub_v1.types import FlowControl

        self._handler = handler
        executor = ThreadPoolExecutor(self.workers, thread_name_prefix="pubsub-worker")
        with self._lock:
            self._last_activity = time.monotonic()
        self._future = self.subscriber.subscribe(
            self.subscription_path,
            callback=self._on_message,
            flow_control=FlowControl(max_messages=self.workers),
            scheduler=ThreadScheduler(executor),
            await_callbacks_on_shutdown=True,
        )

    def stop(self, timeout: float = 10.0) -> None:
        future, self._future = self._future, None
        if future is None:
            return
        future.cancel()
        try:
            future.result(timeout=timeout)
        except Exception:
            logger.exception("queue: streaming pull did not stop cleanly")

    def join(self, timeout: float = 60.0) -> bool:
        """Wait until every message this process knows of is handled or dead-lettered and
        nothing arrived for `settle_seconds` (a backlog left by another process is unknown
        until its first delivery)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                now = time.monotonic()
                idle_for = now - self._last_activity
                if not self._outstanding and self._busy == 0 and idle_for >= self.settle_seconds:
                    return True
                if now >= deadline:
                    return False
                self._lock.wait(min(deadline - now, max(self.settle_seconds - idle_for, 0.01)))

    def dead_letters(self) -> list[dict[str, object]]:
        """Messages this worker moved to the dead-letter topic, in the local queue's shape."""
        with self._lock:
            return [dict(letter) for letter in self._dead]

    def _on_message(self, received: PubSubMessage) -> None:
        try:
            message = Message.from_json(json.loads(received.data))
        except (ValueError, KeyError, TypeError) as exc:
            # Not an envelope: redelivery cannot fix it, so it goes straight to dead letters.
            self._dead_letter(received, None, exc, self._attempt(received))
            return
        with self._lock:
            self._outstanding.add(message.id)
            self._busy += 1
            self._last_activity = time.monotonic()
        try:
            self._deliver(received, message)
        finally:
            with self._lock:
                self._busy -= 1
                self._last_activity = time.monotonic()
                self._lock.notify_all()

    def _deliver(self, received: PubSubMessage, message: Message) -> None:
        assert self._handler is not None
        try:
            self._handler(message)
        except Exception as exc:
            self._failed(received, message, exc)
            return
        received.ack()
        self._finished(message.id, received.message_id)

    def _failed(self, received: PubSubMessage, message: Message, exc: Exception) -> None:
        attempt = self._attempt(received)
        if attempt >= self.max_attempts:
            self._dead_letter(received, message, exc, attempt)
            return
        logger.warning(
            "queue: task %s (%s) failed (attempt %d), redelivering: %s",
            message.id,
            message.type,
            attempt,
            exc,
        )
        received.nack()

    def _dead_letter(
        self, received: PubSubMessage, message: Message | None, exc: Exception, attempt: int
    ) -> None:
        task_id = message.id if message else str(received.message_id)
        error = repr(exc)[:_MAX_ERROR_TEXT]
        attributes = {
            **dict(received.attributes),
            "attempts": str(attempt),
            "last_error": error,
            "source_subscription": self.subscription_name,
        }
        try:
            self.publisher.publish(self.dead_letter_path, received.data, **attributes).result(
                timeout=self.publish_timeout
            )
        except Exception:
            logger.exception("queue: could not dead-letter task %s; redelivering", task_id)
            received.nack()
            return
        logger.error(
            "queue: task %s (%s) dead-lettered after %d attempts: %s",
            task_id,
            message.type if message else "?",
            attempt,
            exc,
        )
        received.ack()
        body = received.data.decode("utf-8", "replace")
        with self._lock:
            self._dead.append(
                {"id": task_id, "body": body, "attempts": attempt, "last_error": error}
            )
        self._finished(task_id, received.message_id)

    def _attempt(self, received: PubSubMessage) -> int:
        # Pub/Sub counts attempts when the subscription has a dead-letter policy; without one
        # this process counts them itself (best effort: a restart starts again at 1).
        if received.delivery_attempt:
            return int(received.delivery_attempt)
        with self._lock:
            count = self._attempts.get(received.message_id, 0) + 1
            self._attempts[received.message_id] = count
        return count

    def _finished(self, task_id: str, received_id: str | None = None) -> None:
        with self._lock:
            self._outstanding.discard(task_id)
            if received_id is not None:
                self._attempts.pop(received_id, None)
            self._last_activity = time.monotonic()
            self._lock.notify_all()


def decode_push(cloud_event_data: dict[str, Any]) -> Message:
    """The task of a Pub/Sub push (CloudEvent `messagePublished` data: message.data base64)."""
    try:
        encoded = cloud_event_data["message"]["data"]
        body = json.loads(base64.b64decode(encoded, validate=True))
        if not isinstance(body, dict):
            raise TypeError("envelope is not an object")
        return Message.from_json(body)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise InvalidArgument(f"not a task envelope: {exc}") from None


def _create_if_missing(create: Callable[[], object]) -> None:
    with contextlib.suppress(google_exceptions.AlreadyExists):
        create()


def _publish_error(topic: str, exc: Exception) -> Exception:
    if isinstance(exc, google_exceptions.NotFound):
        return ConfigurationError(f"Pub/Sub topic {topic} does not exist")
    return Unavailable(f"could not publish to {topic}: {exc}")
