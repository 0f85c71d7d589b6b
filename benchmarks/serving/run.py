"""Serving benchmark: kaito's HF server against two references, at several concurrencies.

    python benchmarks/serving/run.py                # the full run (a few minutes on 2 cores)
    python benchmarks/serving/run.py --size tiny    # the test suite's model instead

Three systems generate the same number of greedy tokens for the same prompts:

- limit: the model's own `generate`, called in this process on batches of `concurrency`
  prompts (left-padded), back to back. No HTTP, no scheduling: what the hardware can do for
  that batch size. Its TTFT is the batch's first decode step.
- naive: a transformers `pipeline` behind an aiohttp endpoint that runs one request at a time
  (defined below, not part of kaito), like upstream's original server. It does not stream, so
  its TTFT is the whole request.
- kaito: `python -m kaito.runtimes.hf` with continuous batching, streaming /v1/completions.

Clients are closed loops: `concurrency` of them, each sending its next request when the last
one finished, until `requests` are done. Tokens/s counts generated tokens over the wall time;
ITL is each request's mean time per output token after the first, p50/p99 over requests (not
shown for the naive server, whose tokens arrive all at once).
End-of-sequence is ignored everywhere, so every request generates exactly `--max-tokens`.
Each concurrency runs limit and kaito `--repeat` times, each pair back to back, and reports the
pair with the median kaito / limit ratio: on a machine shared with other work, a pair sees the
same load, and the median drops the pairs where it changed in between. The naive server runs
once per level.

The default model ("small", ~4M parameters) is a bit bigger than the tests' ~200k-parameter one:
with the tiny model a decode step is mostly Python overhead, and the comparison would measure
interpreters rather than batching. Every process uses `--threads` torch threads (default 1),
so that the HTTP servers keep a core for their event loop and the comparison stays fair.

Results are printed as a table and written as JSON (default `benchmarks/results/`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run from a checkout without installing kaito
    sys.path.insert(0, str(REPO))

from kaito.presets import builtin_presets  # noqa: E402
from kaito.runtimes.hf import TinySize, ensure_tiny_model  # noqa: E402

PRESET = "phi-3-mini-4k-instruct"
SIZES = {
    "tiny": TinySize(),
    "small": TinySize(
        layers=4, hidden_size=256, attention_heads=8, intermediate_size=768, vocab_size=1000
    ),
}
PROMPTS = [
    "The morning train to the coast was late again, so the people on the platform",
    "A good cup of tea needs fresh water, a warm pot and",
    "The library on Market Street opens at nine and closes at six. On Saturdays",
    "Kubernetes runs containers on a group of machines called a cluster, and",
    "The old lighthouse keeper climbed the stairs every evening and",
    "Recipe for simple bread: mix five hundred grams of flour with",
    "Dear team, thank you for your hard work this quarter. We shipped",
    "On the hill above the village there is a small farm with three cows and",
]
TARGETS = {"naive_x_at_16": 3.0, "limit_fraction_at_16": 0.7, "limit_fraction_at_1": 0.9}


@dataclass
class Sample:
    start: float
    first: float
    end: float
    tokens: int

    @property
    def itl(self) -> float:
        return (self.end - self.first) / max(1, self.tokens - 1)


@dataclass
class Result:
    system: str
    concurrency: int
    requests: int
    wall_s: float
    tokens: int
    tokens_per_s: float = 0.0
    requests_per_s: float = 0.0
    ttft_p50_ms: float = 0.0
    ttft_p99_ms: float = 0.0
    itl_p50_ms: float | None = None
    itl_p99_ms: float | None = None
    """None where tokens are not seen one by one (the naive server does not stream)."""
    samples: list[Sample] = field(default_factory=list, repr=False)

    @classmethod
    def of(
        cls, system: str, concurrency: int, samples: list[Sample], *, streamed: bool = True
    ) -> Result:
        wall = max(s.end for s in samples) - min(s.start for s in samples)
        tokens = sum(s.tokens for s in samples)
        ttft = [1000 * (s.first - s.start) for s in samples]
        itl = [1000 * s.itl for s in samples]
        return cls(
            system=system,
            concurrency=concurrency,
            requests=len(samples),
            wall_s=wall,
            tokens=tokens,
            tokens_per_s=tokens / wall,
            requests_per_s=len(samples) / wall,
            ttft_p50_ms=percentile(ttft, 50),
            ttft_p99_ms=percentile(ttft, 99),
            itl_p50_ms=percentile(itl, 50) if streamed else None,
            itl_p99_ms=percentile(itl, 99) if streamed else None,
            samples=samples,
        )

    def row(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("samples")
        return data


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def prompt_for(index: int) -> str:
    return PROMPTS[index % len(PROMPTS)]


# -- the limit: generate() in this process -------------------------------------------------------


def run_limit(model_dir: Path, concurrency: int, requests: int, max_tokens: int) -> Result:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.generation.streamers import BaseStreamer

    class StepClock(BaseStreamer):  # type: ignore[misc]
        """generate() calls put() once with the prompt, then once per decode step."""

        def __init__(self) -> None:
            self.times: list[float] = []

        def put(self, value: Any) -> None:
            self.times.append(time.perf_counter())

        def end(self) -> None:
            pass

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    model.generation_config.eos_token_id = None  # every request makes exactly max_tokens
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    samples: list[Sample] = []
    with torch.inference_mode():
        warm = tokenizer([prompt_for(0)], return_tensors="pt")
        model.generate(**warm, max_new_tokens=2, do_sample=False)
        for first in range(0, requests, concurrency):
            batch = [prompt_for(i) for i in range(first, min(first + concurrency, requests))]
            inputs = tokenizer(batch, return_tensors="pt", padding=True, padding_side="left")
            clock = StepClock()
            start = time.perf_counter()
            out = model.generate(
                **inputs, max_new_tokens=max_tokens, do_sample=False, streamer=clock
            )
            end = time.perf_counter()
            made = out.shape[1] - inputs.input_ids.shape[1]
            first_token = clock.times[1] if len(clock.times) > 1 else end
            samples += [Sample(start, first_token, end, made) for _ in batch]
    return Result.of("limit", concurrency, samples)


# -- HTTP clients ------------------------------------------------------------------------------


async def _stream_request(session: ClientSession, url: str, prompt: str, tokens: int) -> Sample:
    body = {
        "prompt": prompt,
        "max_tokens": tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    first = 0.0
    made = 0
    async with session.post(url + "/v1/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.content:
            # Only two events matter: the first token's and the usage. Decoding every chunk's
            # JSON would load the 2 cores the server runs on with the client's own work.
            if b'"usage":{' in line:
                made = json.loads(line[6:])["usage"]["completion_tokens"]
            elif not first and line.startswith(b"data: {"):
                first = time.perf_counter()
    end = time.perf_counter()
    return Sample(start, first or end, end, made)


async def _plain_request(session: ClientSession, url: str, prompt: str, tokens: int) -> Sample:
    start = time.perf_counter()
    async with session.post(
        url + "/v1/completions", json={"prompt": prompt, "max_tokens": tokens}
    ) as response:
        response.raise_for_status()
        answer = await response.json()
    end = time.perf_counter()
    return Sample(start, end, end, answer["usage"]["completion_tokens"])


async def drive(
    system: str, url: str, concurrency: int, requests: int, max_tokens: int, *, stream: bool
) -> Result:
    """`concurrency` closed-loop clients send `requests` requests in all."""
    send = _stream_request if stream else _plain_request
    next_index = 0
    samples: list[Sample] = []
    connector = TCPConnector(limit=concurrency + 1)
    async with ClientSession(connector=connector, timeout=ClientTimeout(total=600)) as session:
        await send(session, url, prompt_for(0), 2)  # warm up the connection and the server

        async def client() -> None:
            nonlocal next_index
            while next_index < requests:
                index = next_index
                next_index += 1
                samples.append(await send(session, url, prompt_for(index), max_tokens))

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return Result.of(system, concurrency, samples, streamed=stream)


# -- the naive server (a reference, not kaito) ---------------------------------------------------


def build_naive_app(model_dir: Path) -> web.Application:
    """A transformers pipeline behind aiohttp, one request at a time, no streaming."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    model.generation_config.eos_token_id = None
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    one_at_a_time = asyncio.Lock()

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "Healthy"})

    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        tokens = int(body.get("max_tokens", 16))
        async with one_at_a_time:
            out = await asyncio.to_thread(
                generator,
                body["prompt"],
                max_new_tokens=tokens,
                do_sample=False,
                return_full_text=False,
            )
        text = out[0]["generated_text"]
        return web.json_response(
            {"choices": [{"text": text}], "usage": {"completion_tokens": tokens}}
        )

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post("/v1/completions", completions)
    return app


async def _serve_naive(model_dir: Path, port: int) -> None:
    runner = web.AppRunner(build_naive_app(model_dir), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    host, bound = runner.addresses[0][:2]
    print(f"listening on http://{host}:{bound}", flush=True)
    await asyncio.Event().wait()


# -- starting servers --------------------------------------------------------------------------


class Servers:
    """kaito's server and the naive one, as subprocesses or (for tests) in this process."""

    def __init__(self, model_dir: Path, threads: int, max_batch_size: int) -> None:
        self.model_dir = model_dir
        self.threads = threads
        self.max_batch_size = max_batch_size
        self.urls: dict[str, str] = {}
        self._processes: list[subprocess.Popen[str]] = []
        self._runners: list[web.AppRunner] = []

    def _spawn(self, argv: list[str]) -> str:
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads)}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
        self._processes.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        if not match:
            raise RuntimeError(f"{argv[:3]} did not start: {line!r}")
        return match.group(1)

    def kaito_argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "kaito.runtimes.hf",
            "--model",
            str(self.model_dir),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--max-batch-size",
            str(self.max_batch_size),
            "--adapters-dir",
            str(self.model_dir / "no-adapters"),
            "--log-level",
            "warning",
        ]

    async def start(self, *, in_process: bool) -> None:
        if in_process:
            from kaito.runtimes.hf import ServerOptions, create_app, wait_until_loaded

            options = ServerOptions(
                model=str(self.model_dir),
                max_batch_size=self.max_batch_size,
                adapters_dir=str(self.model_dir / "no-adapters"),
            )
            kaito_app = create_app(options)
            self.urls["kaito"] = await self._start_app(kaito_app)
            await wait_until_loaded(kaito_app)
            self.urls["naive"] = await self._start_app(build_naive_app(self.model_dir))
        else:
            self.urls["kaito"] = self._spawn(self.kaito_argv())
            naive = [
                sys.executable,
                __file__,
                "naive-server",
                "--model",
                str(self.model_dir),
                "--threads",
                str(self.threads),
            ]
            self.urls["naive"] = self._spawn(naive)
        async with ClientSession() as session:
            for url in self.urls.values():
                for _ in range(600):
                    async with session.get(url + "/health") as response:
                        if response.status == 200:
                            break
                    await asyncio.sleep(0.1)
                else:
                    raise RuntimeError(f"{url} never became healthy")

    async def _start_app(self, app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._runners.append(runner)
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        for process in self._processes:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


# -- the run -----------------------------------------------------------------------------------


def requests_for(concurrency: int, requests: int | None) -> int:
    """Enough requests for each client to send several: 16, 32, 64, 128 for 1, 4, 16, 64."""
    if requests is not None:
        return requests
    return max(16, min(128, 4 * concurrency if concurrency > 4 else 8 * concurrency))


async def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return await _benchmark(args)
    finally:
        torch.set_num_threads(threads)


async def _benchmark(args: argparse.Namespace) -> dict[str, Any]:
    size = SIZES[args.size]
    cache = Path(args.cache_dir) if args.cache_dir else None
    model_dir = ensure_tiny_model(builtin_presets()[PRESET], cache, size=size)
    servers = Servers(model_dir, args.threads, max(args.concurrency))
    await servers.start(in_process=args.in_process)
    results: list[Result] = []
    runs: list[Result] = []
    try:
        for concurrency in args.concurrency:
            count = requests_for(concurrency, args.requests)
            # The naive server runs once (it is far behind either way); limit and kaito run
            # back to back, so that load from elsewhere on the machine hits a pair alike.
            naive = await drive(
                "naive", servers.urls["naive"], concurrency, count, args.max_tokens, stream=False
            )
            runs.append(naive)
            pairs: list[tuple[Result, Result]] = []
            for _ in range(args.repeat):
                limit = run_limit(model_dir, concurrency, count, args.max_tokens)
                kaito = await drive(
                    "kaito", servers.urls["kaito"], concurrency, count, args.max_tokens, stream=True
                )
                runs += [limit, kaito]
                pairs.append((limit, kaito))
            # the pair with the median kaito / limit ratio stands for the level
            pairs.sort(key=lambda pair: pair[1].tokens_per_s / pair[0].tokens_per_s)
            limit, kaito = pairs[len(pairs) // 2]
            level = [limit, naive, kaito]
            results += level
            print(format_table(level, header=len(results) == 3), flush=True)
    finally:
        await servers.stop()
    marker = json.loads((model_dir / "kaito-tiny.json").read_text())
    return {
        "model": {"preset": PRESET, "size": args.size, "parameters": marker["parameters"]},
        "settings": {
            "max_tokens": args.max_tokens,
            "threads": args.threads,
            "repeat": args.repeat,
            "in_process": args.in_process,
            "cpu_count": os.cpu_count(),
        },
        "results": [r.row() for r in results],
        "runs": [r.row() for r in runs],
        "targets": check_targets(results),
    }


def check_targets(results: Sequence[Result]) -> dict[str, Any]:
    by = {(r.system, r.concurrency): r for r in results}
    checks: dict[str, Any] = {}
    if ("kaito", 16) in by:
        kaito = by["kaito", 16].tokens_per_s
        naive_x = kaito / by["naive", 16].tokens_per_s
        limit_fraction = kaito / by["limit", 16].tokens_per_s
        checks["naive_x_at_16"] = {"value": naive_x, "target": TARGETS["naive_x_at_16"]}
        checks["limit_fraction_at_16"] = {
            "value": limit_fraction,
            "target": TARGETS["limit_fraction_at_16"],
        }
    if ("kaito", 1) in by:
        fraction = by["kaito", 1].tokens_per_s / by["limit", 1].tokens_per_s
        checks["limit_fraction_at_1"] = {
            "value": fraction,
            "target": TARGETS["limit_fraction_at_1"],
        }
    for check in checks.values():
        check["met"] = check["value"] >= check["target"]
    return checks


def format_table(results: Sequence[Result], *, header: bool = True) -> str:
    columns = (
        "system",
        "conc",
        "reqs",
        "tok/s",
        "req/s",
        "TTFT p50",
        "TTFT p99",
        "ITL p50",
        "ITL p99",
    )
    lines = []
    if header:
        lines.append("{:<7}{:>6}{:>6}{:>10}{:>8}{:>10}{:>10}{:>9}{:>9}".format(*columns))
        lines.append(
            "{:<7}{:>6}{:>6}{:>10}{:>8}{:>10}{:>10}{:>9}{:>9}".format(
                "", "", "", "", "", "ms", "ms", "ms", "ms"
            )
        )
    for r in results:
        itl = (r.itl_p50_ms, r.itl_p99_ms)
        lines.append(
            f"{r.system:<7}{r.concurrency:>6}{r.requests:>6}{r.tokens_per_s:>10.0f}"
            f"{r.requests_per_s:>8.2f}{r.ttft_p50_ms:>10.1f}{r.ttft_p99_ms:>10.1f}"
            + "".join(f"{v:>9.2f}" if v is not None else f"{'-':>9}" for v in itl)
        )
    return "\n".join(lines)


def format_targets(checks: dict[str, Any]) -> str:
    names = {
        "naive_x_at_16": "kaito / naive tokens/s at concurrency 16",
        "limit_fraction_at_16": "kaito / limit tokens/s at concurrency 16",
        "limit_fraction_at_1": "kaito / limit tokens/s at concurrency 1",
    }
    return "\n".join(
        f"{names[key]}: {c['value']:.2f} (target >= {c['target']}) "
        + ("met" if c["met"] else "NOT met")
        for key, c in checks.items()
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command")
    naive = sub.add_parser("naive-server", help="run only the naive reference server")
    naive.add_argument("--model", required=True)
    naive.add_argument("--port", type=int, default=0)
    naive.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--requests", type=int, help="requests per concurrency (default: scaled)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument(
        "--repeat", type=int, default=3, help="limit and kaito runs per level (the median counts)"
    )
    parser.add_argument("--cache-dir", help="where the generated model is kept")
    parser.add_argument("--in-process", action="store_true", help="servers in this process")
    parser.add_argument("--out", help="JSON file (default: benchmarks/results/serving-*.json)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.command == "naive-server":
        import torch

        torch.set_num_threads(args.threads)
        asyncio.run(_serve_naive(Path(args.model), args.port))
        return {}
    report = asyncio.run(benchmark(args))
    print()
    print(format_targets(report["targets"]))
    out = (
        Path(args.out)
        if args.out
        else (REPO / "benchmarks" / "results" / f"serving-{time.strftime('%Y%m%d-%H%M%S')}.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")
    return report


if __name__ == "__main__":
    main()
