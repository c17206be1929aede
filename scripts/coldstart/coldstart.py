#!/usr/bin/env python3
"""Cold-start harness for the Lambda functions (see scripts/coldstart/README.md).

Two measurements, each against fakes on loopback:

* start-up: exec of a release `bootstrap` -> its first `GET /2018-06-01/runtime/invocation/next`
  on a fake Lambda Runtime API; each function against a hello-world lambda_runtime function
  built with the same profile, interleaved, N times, median and min.
* first AWS call: one process serves two API Gateway (payload 2.0) invocations through the fake
  Runtime API; each makes a DynamoDB call to a local HTTPS endpoint that answers at once (a test
  CA generated per run, trusted through SSL_CERT_FILE, which the SDK's root loading honours in
  place of the system store; certificate verification stays on). The server closes every
  connection, so both calls pay a TCP and TLS handshake (the second may resume the first's TLS
  session, as it would against AWS); the difference is what the first one pays once.

Stdlib only (plus the `openssl` command for the test certificates).
"""

import argparse
import http.server
import json
import os
import shlex
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
NEXT = "/2018-06-01/runtime/invocation/next"
JWT_KEY = "chat21-events-example-key"  # the events/ example key (events/README.md)

now = time.perf_counter_ns
VERBOSE = False


# --- fake Lambda Runtime API -------------------------------------------------------------------

class Runtime:
    """One process's Runtime API: its own server (a fresh port), so that a poll a killed
    process left in flight cannot take the next process's invocation."""

    def __init__(self, events):
        self.lock = threading.Condition()
        self.events = list(events)  # payloads to hand out, in order
        self.first_poll = None  # ns
        self.sent = {}  # request id -> ns when /next answered
        self.done = {}  # request id -> (ns, status path, body)
        self.init_error = None
        self.stop = False
        self.server = Server(("127.0.0.1", 0), RuntimeHandler)
        self.server.rt = self
        threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True).start()

    @property
    def address(self):
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        with self.lock:
            self.stop = True  # releases a held poll
            self.lock.notify_all()
        self.server.shutdown()
        self.server.server_close()

    def wait(self, pred, timeout):
        deadline = time.monotonic() + timeout
        with self.lock:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.lock.wait(left)
            return True


def debug(*a):
    if os.environ.get("COLDSTART_DEBUG"):
        print(f"[{now() / 1e6:.3f}] {threading.current_thread().name}", *a, file=sys.stderr)


class RuntimeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *a):
        pass

    def do_GET(self):
        t = now()
        debug("GET", self.path, dict(self.headers))
        if self.path != NEXT:
            return self.reply(404, b"{}")
        rt = self.server.rt
        with rt.lock:
            if rt.first_poll is None:
                rt.first_poll = t
                rt.lock.notify_all()
            event = rt.events.pop(0) if rt.events else None
            if event is not None:
                rid = f"req-{len(rt.sent) + 1}"
                rt.sent[rid] = None  # the time once written
        if event is None:
            # No more work: hold the poll (as Lambda freezes the sandbox) until the run ends.
            rt.wait(lambda: rt.stop, 60)
            self.close_connection = True
            return
        body = json.dumps(event).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Lambda-Runtime-Aws-Request-Id", rid)
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
        self.send_header(
            "Lambda-Runtime-Invoked-Function-Arn",
            "arn:aws:lambda:us-east-1:123456789012:function:coldstart",
        )
        self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        with rt.lock:
            rt.sent[rid] = now()
            rt.lock.notify_all()

    def do_POST(self):
        t = now()
        debug("POST", self.path, dict(self.headers))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = self.path.split("/")
        rt = self.server.rt
        # /2018-06-01/runtime/invocation/{id}/response|error or /2018-06-01/runtime/init/error
        with rt.lock:
            if "init" in parts:
                rt.init_error = body
            elif len(parts) >= 6:
                rt.done[parts[4]] = (t, parts[5], body)
            rt.lock.notify_all()
        self.reply(202, b'{"status":"OK"}')

    def reply(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # A function killed at the end of a run leaves broken connections behind.
        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError, TimeoutError)):
            super().handle_error(request, client_address)


def serve(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# --- instant DynamoDB over HTTPS ---------------------------------------------------------------

class Dynamo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: every call does a handshake
    disable_nagle_algorithm = True
    timeout = 10
    calls = []

    def log_message(self, *a):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        target = (self.headers.get("X-Amz-Target") or "").rsplit(".", 1)[-1]
        Dynamo.calls.append(target)
        body = {"Query": {"Count": 0, "ScannedCount": 0, "Items": []}}.get(target, {})
        body = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("x-amzn-RequestId", "coldstart")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def make_certs(d):
    """A throwaway CA and a localhost certificate it signs (verification stays on)."""
    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=coldstart test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign")
    run("req", *ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost")
    Path(d, "ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "extendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "leaf.pem", "-days", "2", "-extfile", "ext")
    return Path(d, "ca.pem"), Path(d, "leaf.pem"), Path(d, "leaf.key")


def https_dynamo(cert, key):
    server = Server(("127.0.0.1", 0), Dynamo)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    # The handshake happens in each connection's thread, not in the accept loop.
    server.socket = ctx.wrap_socket(server.socket, server_side=True,
                                    do_handshake_on_connect=False)
    return serve(server)


# --- runs --------------------------------------------------------------------------------------

def lambda_env(extra):
    """Lambda's environment (AWS_LAMBDA_RUNTIME_API is set per run) and the template's."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_LAMBDA_FUNCTION_NAME": "coldstart",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/coldstart",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2025/01/01/[$LATEST]0",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_EXECUTION_ENV": "AWS_Lambda_provided.al2023",
        "LAMBDA_TASK_ROOT": "/var/task",
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIACOLDSTARTTEST",
        "AWS_SECRET_ACCESS_KEY": "coldstart-secret",
        "AWS_SESSION_TOKEN": "coldstart-session",
        "TABLE_NAME": "chat21",
        "TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:chat21-events",
        "JWT_KEY": JWT_KEY,
    }
    env.update(extra)
    return env


WRAP = []  # --wrap: a command to run the functions under (strace, perf record, ...)


def start(binary, env):
    return subprocess.Popen([*WRAP, str(binary)], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(proc, rt):
    """Kills the function; its output, and the CPU time it used (user + system, ms)."""
    # Killed before its held poll is released (it would exit on its own, and be reaped by
    # Popen without its resource usage).
    os.kill(proc.pid, signal.SIGKILL)
    rt.close()
    out = proc.stdout.read()
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = status
    return out.decode(errors="replace"), (usage.ru_utime + usage.ru_stime) * 1e3


def startup_once(binary, env):
    rt = Runtime([])
    env = {**env, "AWS_LAMBDA_RUNTIME_API": rt.address}
    t0 = now()
    proc = start(binary, env)
    ok = rt.wait(lambda: rt.first_poll is not None or rt.init_error is not None, 20)
    t1 = rt.first_poll
    out, cpu = finish(proc, rt)
    if VERBOSE:
        print(f"{binary.name}: {(t1 - t0) / 1e6:.2f} ms\n{out}", file=sys.stderr)
    if not ok or t1 is None:
        sys.exit(f"{binary}: no poll of the runtime API (init error: {rt.init_error!r})\n{out}")
    return (t1 - t0) / 1e6, cpu


def calls_once(binary, env, event, n_calls):
    rt = Runtime([event] * n_calls)
    env = {**env, "AWS_LAMBDA_RUNTIME_API": rt.address}
    proc = start(binary, env)
    ok = rt.wait(lambda: len(rt.done) == n_calls or rt.init_error is not None, 30)
    done, sent, init_error = dict(rt.done), dict(rt.sent), rt.init_error
    out, cpu = finish(proc, rt)
    if VERBOSE:
        print(out, file=sys.stderr)
    if not ok or init_error:
        sys.exit(f"{binary}: invocations did not complete (init error: {init_error!r}, "
                 f"handed out: {sorted(sent)}, answered: {sorted(done)}, "
                 f"DynamoDB calls: {Dynamo.calls})\n{out}")
    times = []
    for i in range(1, n_calls + 1):
        rid = f"req-{i}"
        t, kind, body = done[rid]
        if kind != "response":
            sys.exit(f"{binary}: invocation {rid} failed: {body!r}\n{out}")
        status = json.loads(body).get("statusCode")
        if status != 200:
            sys.exit(f"{binary}: invocation {rid} answered {status}: {body[:300]!r}\n{out}")
        times.append((t - sent[rid]) / 1e6)
    return times, cpu


def fmt(xs):
    return f"{statistics.median(xs):7.2f} {min(xs):7.2f}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--bin-dir", default=str(ROOT / "target" / "release"),
                   help="where the function binaries are (default: target/release)")
    p.add_argument("--hello", required=True, help="the hello-world baseline binary")
    p.add_argument("--functions", default="send-message,list-conversations,deliver",
                   help="functions to time at start-up (comma-separated)")
    p.add_argument("--call-function", default="list-conversations",
                   help="HTTP function for the first-call measurement ('' to skip)")
    p.add_argument("--event", default=str(ROOT / "events" / "list-conversations.json"))
    p.add_argument("-n", type=int, default=30, help="start-up repetitions (default 30)")
    p.add_argument("--call-runs", type=int, default=10,
                   help="processes for the first-call measurement (default 10)")
    p.add_argument("--env", action="append", default=[], metavar="K=V",
                   help="extra environment for the functions (repeatable)")
    p.add_argument("--max-startup-ratio", type=float, metavar="R",
                   help="fail if a function's median start-up exceeds R x hello world's")
    p.add_argument("--max-first-call-ratio", type=float, metavar="R",
                   help="fail if the median first invocation exceeds R x the second "
                        "(a TLS stack seeding its RNG from CPU jitter shows as ~15x)")
    p.add_argument("--wrap", default="", metavar="CMD",
                   help="run the functions under CMD, e.g. 'strace -f -tt -o /tmp/st' "
                        "(for breakdowns; the times then include CMD's overhead)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print each function's output (logs) to stderr")
    a = p.parse_args()
    global VERBOSE, WRAP
    VERBOSE = a.verbose
    WRAP = shlex.split(a.wrap)

    extra = dict(kv.split("=", 1) for kv in a.env)
    env = lambda_env(extra)
    bins = {f: Path(a.bin_dir, f) for f in a.functions.split(",") if f}
    hello = Path(a.hello)

    # Start-up, interleaved so that machine noise hits everyone alike (one warm-up each).
    for b in [hello, *bins.values()]:
        startup_once(b, env)
    results = {name: [] for name in ["hello", *bins]}
    cpus = {name: [] for name in results}
    for _ in range(a.n):
        for name, b in [("hello", hello), *bins.items()]:
            t, cpu = startup_once(b, env)
            results[name].append(t)
            cpus[name].append(cpu)

    print(f"cold start: exec -> first GET {NEXT}  (n={a.n}, ms; CPU: the process's user+sys)")
    print(f"{'binary':<22} {'bytes':>9} {'median':>7} {'min':>7}  {'ratio':>11}  {'CPU med':>7}")
    h = results["hello"]
    for name in results:
        b = hello if name == "hello" else bins[name]
        xs = results[name]
        ratio = f"{statistics.median(xs) / statistics.median(h):4.2f}x {min(xs) / min(h):4.2f}x"
        print(f"{name:<22} {b.stat().st_size:>9} {fmt(xs)}  {ratio}  "
              f"{statistics.median(cpus[name]):7.2f}")
    print("(ratio: median to hello's median, min to hello's min)")
    failed = []
    for name in bins:
        r = statistics.median(results[name]) / statistics.median(h)
        if a.max_startup_ratio and r > a.max_startup_ratio:
            failed.append(f"{name} starts {r:.2f}x slower than hello world "
                          f"(limit {a.max_startup_ratio}x)")

    if not a.call_function:
        return report(failed)
    with tempfile.TemporaryDirectory() as d:
        ca, cert, key = make_certs(d)
        dynamo = https_dynamo(cert, key)
        url = f"https://localhost:{dynamo.server_address[1]}"
        call_env = {**env, "AWS_ENDPOINT_URL_DYNAMODB": url, "SSL_CERT_FILE": str(ca), **extra}
        event = json.loads(Path(a.event).read_text())
        firsts, seconds, cpus = [], [], []
        binary = Path(a.bin_dir, a.call_function)
        for _ in range(a.call_runs):
            Dynamo.calls.clear()
            t, cpu = calls_once(binary, call_env, event, 2)
            firsts.append(t[0])
            seconds.append(t[1])
            cpus.append(cpu)
        dynamo.shutdown()
    print()
    print(f"first AWS call: {a.call_function}, {Path(a.event).name} through the runtime API, "
          f"DynamoDB {'+'.join(Dynamo.calls) or '-'} over a new TLS connection each "
          f"(runs={a.call_runs}, ms, invocation handed out -> response posted)")
    print(f"{'':<22} {'median':>7} {'min':>7}")
    print(f"{'first invocation':<22} {fmt(firsts)}")
    print(f"{'second invocation':<22} {fmt(seconds)}")
    print(f"{'ratio':<22} {statistics.median(firsts) / statistics.median(seconds):6.2f}x "
          f"{min(firsts) / min(seconds):6.2f}x")
    print(f"{'process CPU, start-up + 2 calls':<32} median {statistics.median(cpus):.2f} ms")
    r = statistics.median(firsts) / statistics.median(seconds)
    if a.max_first_call_ratio and r > a.max_first_call_ratio:
        failed.append(f"the first invocation takes {r:.2f}x the second "
                      f"(limit {a.max_first_call_ratio}x)")
    report(failed)


def report(failed):
    for f in failed:
        print(f"FAIL: {f}", file=sys.stderr)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    main()
