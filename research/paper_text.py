"""The report's fixed text: the problem and the design (what the code does, not what it measured).

Numbers never appear here: they come from the sections' measurements.
"""

from __future__ import annotations

import importlib.util

PROBLEM = """\
## 1. The problem

A team has a trained PyTorch model and wants it behind HTTP: `curl` an image, get
classes back. The usual path is a hand-written server — aiohttp or FastAPI, the
model loaded at start-up, maybe a batching queue — which serves one request at a
time well and then meets the hard parts: a model call holds the GIL and the cores,
so the event loop stalls or one process caps throughput; more processes mean each
pays seconds of `import torch` and a model load, and tensors pickled between them;
traffic comes in bursts, so a fixed pool is either too small at the peak or idle
most of the day; a crashed process must be noticed and replaced; and the fastest
way to run the model (threads, batch size, a compiled backend) differs from one CPU
to the next. autodep takes a model file and does these things itself: a pool of
worker processes started in a fraction of a second, tensors in shared memory,
dynamic batching, an autoscaler, and (where built) an optimizer that picks the
fastest variant of the model on the machine that serves it.

The questions this report answers, each against a baseline measured in the same
run: what does the process boundary cost (transport, worker start, one request's
latency against calling the model in-process), what does autodep give under load
against the in-process limit and against a plain single-process aiohttp server
written the way an expert would, and how well does the autoscaler trade latency
for worker-seconds.
"""

DESIGN = """\
## 2. The design

### From the socket to the worker and back

```
client ─HTTP─► aiohttp handler (server process; it never runs torch)
                 │ body ─► codec thread pool: decode JPEG/PNG, resize, normalise ─► float32 tensor
                 ▼
           ModelPool: bounded queue (max_queue; full → 503 + Retry-After)
                 │ a worker is idle: take up to max_batch_size requests as one batch
                 ▼
           WorkerHandle ── tensors copied into the worker's memfd in-buffer
                 │        ── msgpack header {"op": "run", offsets, shapes, dtypes} ─► socketpair
                 ▼
           worker process (forked from a forkserver that imported torch once):
                 torch.from_numpy(view of the buffer) ─► model(batch), threads set per batch
                 │ ─► outputs written into its memfd out-buffer
                 │ ─► msgpack {"op": "result", ...} ─► socketpair
                 ▼
           WorkerHandle reads the outputs, splits them per request, resolves each future
                 ▼
           codec thread pool: softmax/top-n (or masks, boxes) ─► JSON ─► client
```

- Only small msgpack headers cross the socket; tensor bytes are written once into
  a preallocated shared buffer and read in place. The buffers are anonymous
  (`memfd`), so they vanish with the last process that maps them, even after
  `kill -9`.
- Workers are forked from a multiprocessing forkserver that preloaded torch and
  torchvision and never runs a torch op (GNU OpenMP hangs a child forked after a
  parallel op), so a new worker pays only for loading and warming up its model. A
  worker signals `ready` on its socket after its warm-up calls; its death is seen
  through the process sentinel on the event loop, and a batch it was running is
  retried once on another worker.
- Dynamic batching: a free worker takes what is queued, up to `max_batch_size`; it
  waits (`max_queue_delay_ms`) for more only while other workers are busy, so a lone
  request never waits for a batch to fill.
- Threads: a lone request gets every core in its worker; under load the cores are
  shared among the busy workers.

### The autoscaler's policy

Every tick (1 s) the manager records each model's arrivals, busy worker-seconds,
requests in flight and queued; a pure function (`autodep/autoscale/policy.py`)
decides the desired count:

```
work_t   = max(busy_s_t, arrivals_t * service_s) + queued_t * service_s
needed_t = ceil(work_t / (tick * target_utilisation)), at least 1 with traffic
up       = max needed_t over the short window (2 s): follows a burst within a tick or two
down     = max needed_t over the long window (the idle timeout): release only after
           a whole window without need
desired  = clamp(max(up, min(current, down)), min_workers, max_workers)
```

`service_s` is the measured compute time per request. A request for a model with
no worker starts one at once (a cold start) instead of waiting for the tick.
Several models share `--max-total-workers`: each model with traffic keeps one
worker, the rest goes by unmet demand.
"""

OPTIMIZER = """\
### The optimizer

The fastest way to run a model depends on the CPU: on a Xeon with AMX, bf16
weights or OpenVINO run resnet18 several times faster than the TorchScript file
as loaded; on an AVX2-only EPYC the same bf16 path is several times slower. So
autodep does not choose by the CPU's name but by measuring on the machine that
serves: candidates are data (a name, whether it applies on this CPU, how to
prepare the model: TorchScript frozen and optimised for inference, bf16 and
channels-last, ONNX Runtime, OpenVINO, ...), one measurer times each at the
serving batch sizes, one accuracy gate compares its outputs with the original's,
and a pure function of the measurements picks the winner
(`autodep optimize MODEL.pt` prints the table; `serve --optimize auto|off|NAME`).
"""


def design() -> str:
    """The design section; the optimizer's part says whether this build has one."""
    if importlib.util.find_spec("autodep.optimize") is not None:
        return DESIGN + "\n" + OPTIMIZER
    note = (
        "\n(This build has no `autodep/optimize` package yet, so its section below "
        "is not measured.)\n"
    )
    return DESIGN + "\n" + OPTIMIZER + note
