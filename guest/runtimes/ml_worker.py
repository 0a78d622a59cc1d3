"""wisp's serverless-ML worker (issue 15): a scikit-learn model trained at start, then served.

Run by the agent as a warm worker on the ML root filesystem (guest/build-rootfs.sh --variant
ml), the same framing as python_worker.py, which it uses:

    wisp template create ml --rootfs build/guest/ml-rootfs.ext4 --mode worker \
        --handler "/usr/bin/python3 /usr/lib/wisp/ml_worker.py"

At start (what a cold start pays, and what a template's snapshot holds already done): import
numpy and scikit-learn, generate a synthetic dataset with a fixed seed (100 000 rows x 50
float32 features; labels from a fixed linear rule plus Gaussian noise; nothing downloaded) and
fit SGDClassifier(loss="log_loss") on it for 5 epochs. The sizes are the issue's, fixed: the
point is what the start costs, not the model.

Payload (all integers and floats little-endian; rows are row-major float32):

    request   op (4 ASCII bytes) | u32 rows | u32 features (must be 50) | body
      "pred"  body = rows x 50 float32               predict each row (1 to 100 000 rows)
      "fit1"  body = rows x 50 float32 | rows x u8   one partial_fit on this minibatch with
                                                     these labels (0 or 1; 1 to 10 000 rows,
                                                     the issue's minibatch is 1 000)
      "warm"  body as "fit1"                         the paths of both calls (a predict and a
                                                     partial_fit), for a template's warm-up;
                                                     then the model is put back as it was, so
                                                     the snapshot holds it as trained
    response
      "pred"  "pred" | u32 rows | rows x u8 labels
      "fit1"  "coef" | u32 features | features x float32 coefficients | float32 intercept
              (the model after the update, Cirrus-style: a parameter server gathers these)
      "warm"  "warm" | u32 0

A payload that breaks these rules fails the call (status 1) with a message that names the
field. "fit1" updates this worker's model: each clone restored from a template starts from the
template's model, a worker kept running (wisp exec --keep-worker, serve's warm clones)
accumulates its updates.

The first call a worker answers also prints, on stderr (returned with that call), one line
"ml_worker: init {json}" with how long the start took: import_s, data_s, fit_s, the training
accuracy and the library versions. Every call prints "ml_worker: call {json}": its op, rows
and ms (the worker's own time for it: parsing and the model's work), so a benchmark can tell
the model's time from the transport's.

The generator state needs no reseeding per clone (python_worker.on_resume): the dataset is
fixed by design and the model's random_state is a constant, so every clone answers a request
the same way.
"""
import os

# One BLAS thread: a function VM has one vCPU and the handler's cgroup limits its tasks.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import copy  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

_t0 = time.monotonic()
import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from sklearn.linear_model import SGDClassifier  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import python_worker  # noqa: E402

ROWS = 100_000
FEATURES = 50
EPOCHS = 5
SEED = 15  # the number: any fixed value would do
NOISE = 0.5
MAX_PREDICT_ROWS = 100_000
MAX_FIT_ROWS = 10_000
HEADER = struct.Struct("<4sII")


def true_weights():
    """The fixed linear rule: w_j = cos(0.7 j), bias 0.25. Closed-form, so a client (the
    benchmark) can make labelled rows without numpy."""
    return [math.cos(0.7 * j) for j in range(FEATURES)], 0.25


def make_dataset():
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((ROWS, FEATURES), dtype=np.float32)
    w, b = true_weights()
    noise = rng.standard_normal(ROWS, dtype=np.float32) * NOISE
    y = (x @ np.asarray(w, dtype=np.float32) + b + noise > 0).astype(np.int8)
    return x, y


_t_import = time.monotonic()
_x, _y = make_dataset()
_t_data = time.monotonic()
# tol=None: exactly EPOCHS passes over the data (no early stop, no convergence warning).
model = SGDClassifier(loss="log_loss", max_iter=EPOCHS, tol=None, random_state=SEED)
model.fit(_x, _y)
_t_fit = time.monotonic()
INIT = {"import_s": round(_t_import - _t0, 3), "data_s": round(_t_data - _t_import, 3),
        "fit_s": round(_t_fit - _t_data, 3), "rows": ROWS, "features": FEATURES,
        "epochs": EPOCHS, "train_accuracy": round(float(model.score(_x, _y)), 4),
        "numpy": np.__version__, "sklearn": sklearn.__version__}
del _x, _y  # the snapshot need not carry the training set
_first_call = True


def parse(payload):
    """(op, rows as an (n, 50) float32 array, labels or None) of a request; ValueError naming
    the field that is wrong."""
    if len(payload) < HEADER.size:
        raise ValueError(f"payload: {len(payload)} bytes, shorter than its {HEADER.size}-byte "
                         f"header (op, rows, features)")
    op, n, features = HEADER.unpack_from(payload)
    if op not in (b"pred", b"fit1", b"warm"):
        raise ValueError(f"op: {op!r} is not b'pred', b'fit1' or b'warm'")
    if features != FEATURES:
        raise ValueError(f"features: {features}, the model has {FEATURES}")
    limit = MAX_PREDICT_ROWS if op == b"pred" else MAX_FIT_ROWS
    if not 1 <= n <= limit:
        raise ValueError(f"rows: {n}, expected 1 to {limit} for {op.decode()}")
    want = HEADER.size + n * FEATURES * 4 + (0 if op == b"pred" else n)
    if len(payload) != want:
        raise ValueError(f"payload: {len(payload)} bytes, expected {want} for {n} rows of "
                         f"{op.decode()}")
    x = np.frombuffer(payload, dtype="<f4", count=n * FEATURES, offset=HEADER.size)
    x = x.reshape(n, FEATURES)
    if not np.isfinite(x).all():
        raise ValueError("rows: a value is NaN or infinite")
    if op == b"pred":
        return op, x, None
    y = np.frombuffer(payload, dtype=np.uint8, count=n, offset=HEADER.size + n * FEATURES * 4)
    if (y > 1).any():
        raise ValueError("labels: a label is not 0 or 1")
    return op, x, y.astype(np.int8)


def coefficients(m):
    coef = m.coef_.ravel().astype("<f4")
    return (b"coef" + struct.pack("<I", coef.size) + coef.tobytes()
            + struct.pack("<f", float(m.intercept_[0])))


def handle(payload):
    global _first_call
    if _first_call:
        _first_call = False
        print("ml_worker: init " + json.dumps(INIT, sort_keys=True), file=sys.stderr)
    t0 = time.monotonic()
    op, x, y = parse(payload)
    result = run(op, x, y)
    print("ml_worker: call " + json.dumps({"op": op.decode(), "rows": len(x), "ms": round(
        (time.monotonic() - t0) * 1000, 3)}), file=sys.stderr)
    return result


def run(op, x, y):
    global model
    if op == b"pred":
        labels = model.predict(x).astype(np.uint8)
        return b"pred" + struct.pack("<I", labels.size) + labels.tobytes()
    if op == b"fit1":
        model.partial_fit(x, y)
        return coefficients(model)
    # The very path of the calls (the model's own arrays, the same allocations), so that a
    # template's working set, recorded on its probe clone's first call, covers what a "fit1"
    # touches; then the model goes back to its state before the update.
    saved = copy.deepcopy(model)
    model.predict(x)
    model.partial_fit(x, y)
    coefficients(model)
    model = saved
    return b"warm" + struct.pack("<I", 0)


if __name__ == "__main__":
    python_worker.serve(handle)
