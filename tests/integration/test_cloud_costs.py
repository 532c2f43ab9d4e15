"""The cost-proxy bench on the emulators, small scale: the per-instance write targets hold."""

from __future__ import annotations

from bench import cloud_costs
from tests.emulators import FirestoreEmulator, GcsEmulator, PubSubEmulator

INSTANCES = 20


def test_store_costs_stay_within_targets(
    firestore_emulator: FirestoreEmulator,
    pubsub_emulator: PubSubEmulator,
    gcs_emulator: GcsEmulator,
) -> None:
    scenarios = cloud_costs.measure(firestore_emulator, pubsub_emulator, gcs_emulator, INSTANCES)
    by_name = {scenario.name.split(" (")[0] + scenario.unit: scenario for scenario in scenarios}
    stores = [s for s in scenarios if s.name.startswith("store")]
    assert len(stores) == 2, [s.name for s in scenarios]
    for scenario in stores:
        per = scenario.per_unit()
        assert per.get("fs_writes", 0) + per.get("fs_deletes", 0) <= 2, (scenario.name, per)
        # Exactly one finished upload per instance, in one request (no resumable session).
        assert scenario.counts.get("gcs_object_writes") == INSTANCES, (scenario.name, per)
        assert scenario.counts.get("gcs_upload_requests") == INSTANCES, (scenario.name, per)
        assert not scenario.counts.get("gcs_deletes"), (scenario.name, per)

    # The instrumentation sees the other paths too (guards against counting nothing).
    retrieve = by_name["retrieve instanceretrieved instance"].counts
    assert retrieve.get("gcs_downloads", 0) >= 1, retrieve
    search = by_name["search studiespage"].counts
    assert search.get("fs_reads", 0) >= 1, search
    delete = by_name["delete studypurged instance"].counts
    assert delete.get("gcs_deletes") == INSTANCES, delete
    assert delete.get("pubsub_messages", 0) >= 1, delete

    table = cloud_costs.markdown(scenarios)
    assert table.count("\n") == len(scenarios) + 1
