"""bertcpu serve under concurrent clients, against in-process SentenceEncoder.encode (the
ceiling), infinity-emb (torch backend) and the sentence-transformers + FastAPI app people write by
hand (bench/st_fastapi_app.py), all on the same model folder, threads and cores.

    flock /tmp/bertcpu-bench.lock python bench/bench_server.py --json server.json
    python bench/bench_server.py --clients 1,32 --rounds 1 --skip infinity      # quicker

Texts: real English sentences of mixed length (3 to 120 words, median about 19), the sentences
of the Python reference documentation that ships with Python (pydoc_data.topics), shuffled with
a fixed seed. Every request carries one sentence, as an OpenAI-style embeddings request
({"input": [sentence]}), to each server's OpenAI route.

The load generator is a separate process (asyncio, one keep-alive HTTP/1.1 connection per
client, each client sending its next request when its answer is in: closed loop), so its work is
not the server's; it is bounded by a request count and a time limit per run, and talks to the
loopback interface only. Per run it reports requests/s, tokens/s (the model's tokens of the
sentences answered) and latency percentiles.

In-process rows: `encode(texts, batch_size=32)` over the same texts (throughput), and `encode(text)`
one sentence at a time (the 1-client latency). Servers are started once and left running; every
round runs each client count for every contender in turn (the order rotating per round), and the
tables give medians over rounds, so load from other processes falls on all contenders alike.
Every server's vectors are checked against encode() before timing.
"""
import argparse
import asyncio
import json
import os
import pathlib
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
MODEL_NAME = "minilm"


# -- texts -----------------------------------------------------------------------------------------

def real_sentences(count, seed=0):
    """Sentences of the Python reference documentation (prose only: 3-120 words, mostly letters,
    no code examples), shuffled with `seed`; repeated if more are asked for than there are."""
    from pydoc_data.topics import topics

    text = re.sub(r"\s+", " ", " ".join(topics[key] for key in sorted(topics)))
    sentences = []
    for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text):
        words = len(sentence.split())
        prose = sum(c.isalpha() or c == " " for c in sentence) / len(sentence)
        if 3 <= words <= 120 and prose >= 0.85 and not any(
                mark in sentence for mark in (">>>", "::", "***", "===", "---")):
            sentences.append(sentence)
    random.Random(seed).shuffle(sentences)
    return [sentences[i % len(sentences)] for i in range(count)]


# -- the load generator (its own process) --------------------------------------------------------

async def _client(host, port, path, bodies, next_index, stop_at, latencies, statuses):
    reader, writer = await asyncio.open_connection(host, port)
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: ").encode()
    try:
        while time.perf_counter() < stop_at:
            index = next_index()
            if index is None:
                return
            body = bodies[index]
            started = time.perf_counter()
            writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
            header = await reader.readuntil(b"\r\n\r\n")
            status = int(header[9:12])
            match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", header)
            if match is None:
                raise RuntimeError(f"the server answered without Content-Length: {header[:200]!r}")
            await reader.readexactly(int(match.group(1)))
            latencies.append((index, time.perf_counter() - started))
            statuses.append(status)
    finally:
        writer.close()


async def _load(url, path, bodies, clients, requests, seconds):
    host, port = url.split("//")[1].split(":")
    issued = iter(range(requests))

    def next_index():
        return next(issued, None)

    latencies, statuses = [], []
    started = time.perf_counter()
    await asyncio.gather(*[_client(host, int(port), path, bodies, next_index, started + seconds,
                                   latencies, statuses) for _ in range(clients)])
    return {"wall": time.perf_counter() - started, "latencies": latencies,
            "errors": sum(status != 200 for status in statuses)}


def loadgen_main(argv):
    parser = argparse.ArgumentParser(prog="bench_server.py loadgen")
    parser.add_argument("url")
    parser.add_argument("path")
    parser.add_argument("bodies", help="JSON file: a list of request bodies (strings)")
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args(argv)
    bodies = [body.encode() for body in json.loads(pathlib.Path(args.bodies).read_text())]
    result = asyncio.run(_load(args.url, args.path, bodies, args.clients,
                               min(args.requests, len(bodies)), args.seconds))
    json.dump(result, sys.stdout)


# -- servers ---------------------------------------------------------------------------------------

def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post_json(url, body, timeout=60):
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.loads(answer.read())


class Contender:
    """A server subprocess answering OpenAI-style embedding requests at url + path."""

    def __init__(self, name, command, path, threads, log_dir, env=None):
        self.name = name
        self.path = path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [str(part).replace("{port}", str(self.port)) for part in command]
        environment = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(threads),
                           DO_NOT_TRACK="1", INFINITY_ANONYMOUS_USAGE_STATS="0", **(env or {}))
        self.log = open(pathlib.Path(log_dir) / f"{name.split()[0]}.log", "w")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT,
                                        env=environment)

    def wait_ready(self, timeout=300):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see "
                                   f"{self.log.name}")
            try:
                return self.embed(["ready?"])
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"{self.name} did not answer within {timeout} s; see {self.log.name}")

    def embed(self, texts):
        answer = post_json(self.url + self.path, {"input": texts, "model": MODEL_NAME})
        return np.array([item["embedding"] for item in sorted(answer["data"],
                                                             key=lambda item: item["index"])])

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def start_contenders(args, log_dir):
    folder, threads = str(args.model), args.threads
    contenders = []
    if "bertcpu" not in args.skip:
        contenders.append(Contender(
            "bertcpu serve", [sys.executable, "-m", "bertcpu", "serve", folder, "--port", "{port}",
                              "--threads", str(threads), "--log-level", args.bertcpu_log_level],
            "/v1/embeddings", threads, log_dir, env={"PYTHONPATH": str(REPO)}))
    if "infinity" not in args.skip:
        binary = shutil.which(args.infinity) or args.infinity
        if not os.path.exists(binary):
            print(f"infinity: {args.infinity} not found, skipped (pip install "
                  f"'infinity-emb[server,torch]', or --infinity PATH)")
        else:
            contenders.append(Contender(
                "infinity (torch)", [binary, "v2", "--model-id", folder, "--engine", "torch",
                                     "--device", "cpu", "--port", "{port}", "--served-model-name",
                                     MODEL_NAME, "--log-level", "warning", "--no-model-warmup"],
                "/embeddings", threads, log_dir))
    if "st-fastapi" not in args.skip:
        contenders.append(Contender(
            "sentence-transformers + FastAPI", [sys.executable, str(HERE / "st_fastapi_app.py"),
                                                folder, "--port", "{port}", "--threads",
                                                str(threads)],
            "/v1/embeddings", threads, log_dir))
    return contenders


# -- the driver ------------------------------------------------------------------------------------

def percentiles(latencies):
    values = np.array(latencies) * 1000
    return {f"p{q}": float(np.percentile(values, q)) for q in (50, 95, 99)}


def run_load(contender, bodies_file, tokens, clients, requests, seconds):
    command = [sys.executable, __file__, "loadgen", contender.url, contender.path, bodies_file,
               "--clients", str(clients), "--requests", str(requests), "--seconds", str(seconds)]
    result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    done = result["latencies"]
    return {"requests_per_s": len(done) / result["wall"],
            "tokens_per_s": sum(tokens[index] for index, _ in done) / result["wall"],
            "errors": result["errors"], "requests": len(done),
            **percentiles([latency for _, latency in done])}


def in_process_rows(encoder, texts, tokens, single_calls):
    started = time.perf_counter()
    encoder.encode(texts, batch_size=32)
    wall = time.perf_counter() - started
    batched = {"requests_per_s": len(texts) / wall, "tokens_per_s": sum(tokens) / wall}
    latencies = []
    wall_single = time.perf_counter()
    for text in texts[:single_calls]:
        started = time.perf_counter()
        encoder.encode(text)
        latencies.append(time.perf_counter() - started)
    wall_single = time.perf_counter() - wall_single
    single = {"requests_per_s": single_calls / wall_single,
              "tokens_per_s": sum(tokens[:single_calls]) / wall_single, **percentiles(latencies)}
    return batched, single


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "loadgen":
        return loadgen_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="model folder (default: all-MiniLM-L6-v2 from its PyPI wheel)")
    parser.add_argument("--clients", default="1,8,32,128", help="concurrent client counts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="engine threads of every contender")
    parser.add_argument("--requests", type=int, default=2000,
                        help="requests per run at most (1 client: a tenth)")
    parser.add_argument("--seconds", type=float, default=15, help="time limit of one run")
    parser.add_argument("--skip", default="", help="contenders to leave out: bertcpu, infinity, "
                                                   "st-fastapi (comma-separated)")
    parser.add_argument("--infinity", default="infinity_emb",
                        help="the infinity_emb command (e.g. from a virtualenv of its own)")
    parser.add_argument("--bertcpu-log-level", default="warning",
                        help="bertcpu serve --log-level (info logs a line per request)")
    parser.add_argument("--json", metavar="FILE", help="also write every run as JSON")
    args = parser.parse_args()
    args.skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    levels = [int(c) for c in args.clients.split(",")]

    import bertcpu
    from bertcpu import SentenceEncoder
    from bertcpu.benchmark import minilm_folder

    args.model = args.model or minilm_folder()
    encoder = SentenceEncoder.from_pretrained(args.model, num_threads=args.threads)
    texts = real_sentences(args.requests)
    tokens = [len(ids) for ids in encoder.tokenizer(texts, truncation=True,
                                                    max_length=encoder.max_seq_length)["input_ids"]]
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="bench_server_"))
    bodies_file = str(workdir / "bodies.json")
    pathlib.Path(bodies_file).write_text(json.dumps(
        [json.dumps({"input": [text], "model": MODEL_NAME}) for text in texts]))
    print(f"{len(texts)} sentences, {statistics.mean(tokens):.1f} tokens on average "
          f"(median {statistics.median(tokens):.0f}, max {max(tokens)}); logs in {workdir}")

    contenders = start_contenders(args, workdir)
    try:
        check = texts[:4]
        expected = encoder.encode(check, normalize_embeddings=True)
        for contender in contenders:
            contender.wait_ready()
            difference = np.abs(contender.embed(check) - expected).max()
            print(f"{contender.name}: ready, max abs difference from encode() {difference:.2e}")
            if difference > 1e-4:
                raise RuntimeError(f"{contender.name} does not serve the same vectors")
            run_load(contender, bodies_file, tokens, 8, 64, 30)  # warm-up, not counted
        runs = []
        for round_index in range(args.rounds):
            batched, single = in_process_rows(encoder, texts, tokens, args.requests // 10)
            runs.append({"round": round_index, "contender": "in-process encode (batch 32)",
                         "clients": None, **batched})
            runs.append({"round": round_index, "contender": "in-process encode (one at a time)",
                         "clients": 1, **single})
            for clients in levels:
                requests = args.requests // 10 if clients == 1 else args.requests
                shift = round_index % max(len(contenders), 1)
                for contender in contenders[shift:] + contenders[:shift]:
                    result = run_load(contender, bodies_file, tokens, clients, requests, args.seconds)
                    runs.append({"round": round_index, "contender": contender.name,
                                 "clients": clients, **result})
                    print(f"round {round_index + 1} {clients:>3} clients {contender.name:<32} "
                          f"{result['requests_per_s']:8.1f} req/s  p50 {result['p50']:7.2f} ms  "
                          f"p99 {result['p99']:7.2f} ms  errors {result['errors']}", flush=True)
    finally:
        for contender in contenders:
            contender.stop()

    report(runs, levels, [c.name for c in contenders])
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu_info": bertcpu.cpu_info(), "load_average": os.getloadavg(),
                       "threads": args.threads, "runs": runs}, f, indent=1)


def report(runs, levels, names):
    def median_of(contender, clients, key):
        values = [run[key] for run in runs if run["contender"] == contender
                  and run["clients"] == clients and key in run]
        return statistics.median(values) if values else None

    ceiling = median_of("in-process encode (batch 32)", None, "requests_per_s")
    ceiling_tokens = median_of("in-process encode (batch 32)", None, "tokens_per_s")
    print(f"\nin-process encode (batch 32): {ceiling:.1f} sentences/s, {ceiling_tokens:,.0f} tokens/s")
    print("\n| clients | contender | req/s | tokens/s | p50 ms | p95 ms | p99 ms | vs in-process |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for clients in levels:
        rows = (["in-process encode (one at a time)"] if clients == 1 else []) + names
        for name in rows:
            rate = median_of(name, clients, "requests_per_s")
            if rate is None:
                continue
            cells = [f"{median_of(name, clients, key):.2f}" for key in ("p50", "p95", "p99")]
            print(f"| {clients} | {name} | {rate:.1f} | {median_of(name, clients, 'tokens_per_s'):,.0f} | "
                  f"{' | '.join(cells)} | {rate / ceiling:.2f} |")
    if "bertcpu serve" in names:
        peers = [name for name in names if name != "bertcpu serve"]
        for clients in levels:
            ours = median_of("bertcpu serve", clients, "requests_per_s")
            best = max(peers, key=lambda name: median_of(name, clients, "requests_per_s"), default=None)
            if best is not None:
                print(f"{clients} clients: bertcpu serve {ours / median_of(best, clients, 'requests_per_s'):.2f}x "
                      f"the best peer ({best}); p99 {median_of('bertcpu serve', clients, 'p99'):.1f} vs "
                      f"{median_of(best, clients, 'p99'):.1f} ms")
        single = median_of("in-process encode (one at a time)", 1, "p50")
        print(f"1 client: bertcpu serve p50 {median_of('bertcpu serve', 1, 'p50'):.2f} ms, in-process "
              f"encode(text) p50 {single:.2f} ms")


if __name__ == "__main__":
    main()
