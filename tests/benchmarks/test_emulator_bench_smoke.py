"""Smoke test of the emulator benchmark (benchmarks/emulator): its harness and its command line.

The benchmark is run by hand, not by the test suite; these tests run it at a tiny size so that
a change to the emulator or the client that breaks it shows up here. They check that every
operation produced a row in every configuration, with positive counts and times, and that the
command line writes the JSON it prints. They assert nothing about speed: the machines are
shared, and only ratios measured in one run mean something.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "emulator"
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import emulator_harness as harness  # noqa: E402

pytestmark = pytest.mark.timeout(30)

HAS_PROC = os.path.exists("/proc/self/stat")

TINY = harness.Sizes(
    creates=6,
    gets=6,
    updates=4,
    list_sizes=(10, 20),
    list_reads=30,
    watch_paced=3,
    watch_burst=4,
    concurrency=(1, 3),
    watchers=(1, 2),
)


def _load_run_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("emulator_bench_run", BENCH_DIR / "run.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _expected_operations() -> list[str]:
    return [
        harness.OP_CREATE_CM,
        harness.OP_CREATE_WS,
        harness.OP_GET,
        harness.OP_UPDATE,
        harness.OP_PATCH_CM,
        harness.OP_PATCH_STATUS,
        harness.list_operation(10, selector=False),
        harness.list_operation(10, selector=True),
        harness.list_operation(20, selector=False),
        harness.list_operation(20, selector=True),
        harness.watch_operation(1, burst=False),
        harness.watch_operation(1, burst=True),
        harness.watch_operation(2, burst=False),
        harness.watch_operation(2, burst=True),
    ]


# The child process of the subprocess configuration takes a few seconds to import and start,
# so it has a test of its own.
@pytest.mark.parametrize(
    "configs",
    [(harness.STORE, harness.IN_PROCESS), (harness.SUBPROCESS,)],
    ids=["store+in-process", "subprocess"],
)
async def test_every_configuration_measures_every_operation(configs: tuple[str, ...]) -> None:
    result = await harness.run(TINY, configs)

    keys = {(row.operation, row.config, row.concurrency) for row in result.rows}
    assert len(keys) == len(result.rows), "a row was measured twice"
    for operation in _expected_operations():
        for config in configs:
            concurrencies = {c for (op, cfg, c) in keys if (op, cfg) == (operation, config)}
            if config == harness.STORE or operation.startswith(("list", "watch")):
                # Store calls are synchronous: one worker. Lists run one at a time, and the
                # watch rows have their own writers.
                assert len(concurrencies) == 1, (operation, config)
            else:
                assert concurrencies == {1, 3}, (operation, config)

    for row in result.rows:
        assert row.n > 0
        assert row.seconds > 0
        assert row.ops_per_s > 0
        assert 0 < row.p50_ms <= row.p99_ms
        if row.config == harness.STORE:
            assert row.client_cpu_ms_per_op is None
        else:
            assert row.client_cpu_ms_per_op is not None
            assert row.client_cpu_ms_per_op > 0
        if row.config != harness.STORE and harness.STORE in configs:
            assert row.slowdown_vs_store is not None
            assert row.slowdown_vs_store > 0
        else:
            assert row.slowdown_vs_store is None
        if row.config == harness.SUBPROCESS and HAS_PROC:
            # /proc counts in clock ticks: a tiny phase may cost the server less than one.
            assert row.server_cpu_ms_per_op is not None
            assert row.server_cpu_ms_per_op >= 0
        else:
            assert row.server_cpu_ms_per_op is None
    table = harness.format_table(result)
    assert all(config in table for config in configs)


async def test_counts_follow_the_sizes() -> None:
    result = await harness.run(TINY, configs=[harness.STORE])

    assert result.row(harness.OP_CREATE_WS, harness.STORE).n == TINY.creates
    assert result.row(harness.OP_GET, harness.STORE).n == TINY.gets
    assert result.row(harness.OP_PATCH_STATUS, harness.STORE).n == TINY.updates
    assert result.row(harness.list_operation(20, False), harness.STORE).n == 3
    # One delivery per write and watcher.
    paced = result.row(harness.watch_operation(2, False), harness.STORE)
    assert paced.n == 2 * TINY.watch_paced
    burst = result.row(harness.watch_operation(2, True), harness.STORE, concurrency=3)
    assert burst.n == 2 * TINY.watch_burst


def test_command_line_prints_the_table_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_script = _load_run_script()
    out = tmp_path / "results" / "emulator.json"

    code = run_script.main(["--out", str(out), "--config", "store"], sizes=TINY)

    assert code == 0
    printed = capsys.readouterr().out
    document = json.loads(out.read_text())
    assert document["benchmark"] == "emulator"
    assert document["configs"] == ["store"]
    assert document["sizes"]["creates"] == TINY.creates
    operations = {row["operation"] for row in document["rows"]}
    assert operations == set(_expected_operations())
    for operation in operations:
        assert operation in printed
    assert all(row["ops_per_s"] > 0 for row in document["rows"])


async def test_unknown_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown configurations"):
        await harness.run(TINY, configs=["etcd"])


def test_sizes_reject_more_writes_than_objects() -> None:
    with pytest.raises(ValueError, match="updates must not exceed creates"):
        harness.Sizes(
            creates=2,
            gets=1,
            updates=3,
            list_sizes=(10,),
            list_reads=10,
            watch_paced=1,
            watch_burst=1,
        )


def test_list_repeats_are_bounded() -> None:
    assert TINY.list_repeats(10) == 3
    assert harness.FULL.list_repeats(100) == 50
    assert harness.FULL.list_repeats(5000) == 4


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert harness.percentile(values, 0.5) == 50.0
    assert harness.percentile(values, 0.99) == 99.0
    assert harness.percentile([3.0], 0.99) == 3.0
    with pytest.raises(ValueError, match="no values"):
        harness.percentile([], 0.5)


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc")
def test_process_cpu_seconds_reads_proc() -> None:
    sum(i * i for i in range(200_000))  # make sure some CPU time has been used
    used = harness.process_cpu_seconds(os.getpid())
    assert used is not None
    assert used > 0
    assert harness.process_cpu_seconds(2**22 + 12345) is None
