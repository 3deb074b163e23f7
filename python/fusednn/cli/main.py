"""The ``fusednn`` command line (also ``python -m fusednn``)."""
from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Callable


def _info(args: argparse.Namespace) -> int:
    import numpy as np

    import fusednn
    from fusednn import backends

    try:
        from fusednn import _build_info as bi
    except ImportError:
        bi = None
    print(f"fusednn {fusednn.__version__}  (Python {platform.python_version()}, NumPy {np.__version__})")
    avail = backends.available()
    print("backends available: " + ", ".join(avail))
    for name, why in backends.unavailable().items():
        print(f"  {name}: unavailable - {why}")
    try:
        active = backends.get_backend().name
    except Exception as e:  # FUSEDNN_BACKEND names an unavailable backend
        active = f"none ({e})"
    print(f"active backend: {active}")
    k = backends.native("cpu")
    if k is not None:
        feats = ", ".join(f for f, on in k.cpu_features().items() if on) or "none"
        print(f"cpu: {platform.processor() or platform.machine()}; features detected: {feats}; "
              f"kernels use: {k.simd_path()}")
    print(f"threads: {fusednn.get_num_threads()}")
    if bi is not None:
        if bi.CUDA_BUILT:
            cuda = f"built for sm_{bi.CUDA_ARCHS.replace(';', ', sm_')} with nvcc {bi.CUDA_COMPILER_VERSION}"
        elif bi.CUDA_OPTION == "OFF":
            cuda = "not built (disabled with FUSEDNN_CUDA=OFF)"
        else:
            cuda = "not built (no CUDA compiler found)"
        print(f"build: {bi.CXX_COMPILER}; CUDA extension {cuda}")
    from fusednn.backends import cuda as cuda_backend

    for d in cuda_backend.device_info():
        cc = "{}.{}".format(*d["compute_capability"])
        free = f", {d['free_memory'] / 2**30:.1f} GiB free" if "free_memory" in d else ""
        print(f"gpu {d['device']}: {d['name']}, compute capability {cc}, {d['multiprocessors']} SMs, "
              f"{d['total_memory'] / 2**30:.1f} GiB{free}; machine code for sm_{cc.replace('.', '')} "
              f"{'built' if d['arch_built'] else 'NOT built (runs from PTX, if at all)'}")
    if "cuda" in avail and "cpu" in avail:
        # measured on an H200 machine (benchmarks/RESULTS.md); see README "Small models and the GPU"
        print("note: for small models the cpu backend can be faster than cuda's default path "
              "(measured on an H200 + 16-core CPU: 1000x10 -> 64 -> 64 -> 1, batch 32: cpu 2.6x faster; "
              "60000x784 -> 256 -> 256 -> 10, batch 128: cuda 1.8x faster); FUSEDNN_BACKEND=cpu picks the cpu, "
              "FUSEDNN_CUDA_PERSISTENT=1 / FUSEDNN_CUDA_GRAPH=1 the opt-in launch-light GPU paths (not yet "
              "verified on a device)")
    return 0


def _demo(args: argparse.Namespace) -> int:
    """The issue's seed program (Keras-style regression on random data), timed."""
    import time

    import numpy as np

    import fusednn
    from fusednn import keras

    if args.backend:
        fusednn.set_backend(args.backend)
    keras.utils.set_random_seed(args.seed)
    print(f"fusednn {fusednn.__version__} demo on the {fusednn.get_backend().name} backend "
          f"(seed {args.seed}, {fusednn.get_num_threads()} threads)")
    x_train = np.random.random((1000, 10))
    y_train = np.random.random((1000, 1))
    model = keras.Sequential([
        keras.layers.Dense(64, activation="relu", input_shape=(10,)),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer="adam", loss="mean_squared_error")
    model.summary()
    t0 = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=args.epochs, verbose=0)
    wall = time.perf_counter() - t0
    print(f"fit(epochs={args.epochs}, batch_size=32) on 1000 samples: {wall:.3f} s wall, "
          f"loss {history.history['loss'][0]:.4f} -> {history.history['loss'][-1]:.4f} "
          f"(variance of y: {y_train.var():.4f})")
    x_test = np.random.random((100, 10))
    for epoch in range(100):
        model.fit(x_train, y_train, batch_size=32, epochs=1, verbose=0)
        if (epoch + 1) % 10 == 0:
            print(f"Epoch {epoch + 1}: Loss = {model.evaluate(x_train, y_train, verbose=0):.6f}")
    predictions = model.predict(x_test, verbose=0)
    print("Predictions (first 5 of 100): " + ", ".join(f"{p:.4f}" for p in predictions[:5, 0]))
    return 0


def _bench(args: argparse.Namespace) -> int:
    """Kernel benchmark (default) or, with `training`, whole training runs."""
    from fusednn import bench

    what = args.what or []
    if "training" in what:
        if len(what) > 1:
            raise SystemExit("fusednn bench: 'training' cannot be combined with kernel names")
        return _bench_training(args)
    unknown = [w for w in what if w not in bench.KERNELS]
    if unknown:
        raise SystemExit(f"fusednn bench: unknown kernel(s) {', '.join(unknown)}; valid: "
                         f"{', '.join(bench.KERNELS)} or 'training'")

    def progress(r):
        if args.verbose:
            print(f"  {r.kernel} {r.size} {r.impl}: {r.status}", file=sys.stderr, flush=True)

    results = bench.run(what or None, args.backend or None, quick=args.quick, repeats=args.repeats,
                        references=not args.no_references, progress=progress)
    info = bench.machine_info()
    print(f"# {info.get('cpu', '')}, {info['threads']} threads, fusednn {info['fusednn']}, NumPy {info['numpy']}"
          + (f", PyTorch {info['torch']} ({info['torch_threads']} threads)" if "torch" in info else ""))
    print(bench.format_table(results))
    print("# ratio = reference time / fusednn time (>1: fusednn faster); 'of copy' = rate / copy bandwidth "
          "measured in this run")
    bad = [r for r in results if r.status in ("wrong", "error") and r.impl.startswith("fusednn")]
    if args.json:
        bench.write_json(results, args.json)
        print(f"# wrote {args.json}")
    if args.plot:
        bench.plot(results, args.plot)
        print(f"# wrote {args.plot}")
    return 1 if bad else 0


def _bench_training(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from fusednn.bench import machine_info, training

    def progress(r):
        if args.verbose:
            print(f"  {r.workload} {r.impl}: {r.seconds}", file=sys.stderr, flush=True)

    runs = training.run(args.workload or None, args.impl or None, repeats=args.repeats if args.repeats != 7 else 3,
                        progress=progress)
    print(training.format_table(runs))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine_info(), "runs": [dataclasses.asdict(r) for r in runs]}, f, indent=1)
        print(f"# wrote {args.json}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    """Serve a saved model over HTTP (see fusednn.serve)."""
    from fusednn import serve

    if args.backend:
        import fusednn

        fusednn.set_backend(args.backend)
    try:
        serve.serve(args.model, host=args.host, port=args.port, max_batch=args.max_batch, max_body=args.max_body,
                    log_level=args.log_level, access_log=args.access_log, max_inflight_body=args.max_inflight_body,
                    header_timeout=args.header_timeout, body_timeout=args.body_timeout,
                    keep_alive=args.keep_alive, max_connections=args.max_connections)
    except (ValueError, ImportError, FileNotFoundError) as e:
        print(f"fusednn serve: error: {e}", file=sys.stderr)
        return 2
    return 0


def _data_command(name: str, run: Callable[[], object]) -> int:
    """Run a train/evaluate/predict step; bad data, a bad model file or a missing file
    is reported in one line with exit status 2, as argparse reports bad arguments."""
    from fusednn.files import allow_streams

    from .csv_data import DataError

    try:
        with allow_streams():  # --out may name an existing FIFO or /dev/null: written through, as `>` does
            run()
    except (DataError, ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as e:
        kind = "" if isinstance(e, (DataError, ValueError)) else f"{type(e).__name__}: "
        print(f"fusednn {name}: error: {kind}{e}", file=sys.stderr)
        return 2
    return 0


def _train(args: argparse.Namespace) -> int:
    """Train a model on a CSV file and save it (see fusednn.cli.tabular)."""
    from . import tabular

    if args.ranks is not None:  # data parallelism: re-run under mpiexec, or join as one of its ranks
        from fusednn.distribution.launch import run_as_ranks

        code = run_as_ranks(args.ranks, args.argv)
        if code is not None:
            return code

    if args.backend:
        import fusednn

        fusednn.set_backend(args.backend)
    cfg = tabular.TrainConfig(target=args.target, task=args.task, layers=args.layers, epochs=args.epochs,
                              batch_size=args.batch_size, learning_rate=args.lr,
                              validation_split=args.validation_split, test_size=args.test_size, seed=args.seed,
                              outliers=None if args.outliers == "none" else args.outliers,
                              verbose="auto" if args.verbose is None else args.verbose)
    return _data_command("train", lambda: tabular.train(args.data, args.out, cfg))


def _evaluate(args: argparse.Namespace) -> int:
    from . import tabular

    return _data_command("evaluate", lambda: tabular.evaluate(args.model, args.data))


def _is_stdout(path: str) -> bool:
    """Whether ``path`` (e.g. /dev/stdout) is the file standard output writes to: then
    the CSV went there and a report line would corrupt it."""
    import os

    try:
        a, b = os.stat(path), os.fstat(sys.stdout.fileno())
    except (OSError, ValueError):
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _predict(args: argparse.Namespace) -> int:
    from . import tabular

    def run() -> None:
        n = tabular.predict(args.model, args.data, args.out)
        if args.out != "-" and not _is_stdout(args.out):
            print(f"wrote {n} predictions to {args.out}")

    return _data_command("predict", run)


def _layer_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        sizes = (0,)
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"must be comma-separated positive integers like 64,64, got {text!r}")
    return sizes


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}")
    return value


def _size(text: str) -> int:
    from fusednn.serve import parse_size

    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port number from 0 to 65535, got {text!r}")
    return value


def _out_path(text: str) -> str:
    """An output path: '-' (standard output), a new or regular file, or an existing FIFO or
    character device (written through); a directory or a trailing slash is an argument error."""
    from fusednn.files import NotARegularFileError, allow_streams, check_target

    if text == "-":
        return text
    try:
        with allow_streams():
            check_target(text)
    except NotARegularFileError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fusednn", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, backends and why any is unavailable, CPU features, threads"
                   ).set_defaults(func=_info)
    demo = sub.add_parser("demo", help="train the Keras-style seed program on random data and time fit()")
    demo.add_argument("--backend", choices=["numpy", "cpu", "cuda"], default=None,
                      help="backend to run on (default: the active one, see `fusednn info`)")
    demo.add_argument("--seed", type=int, default=0, help="random seed for data, weights and shuffling")
    demo.add_argument("--epochs", type=int, default=100, help="epochs of the timed first fit (default 100)")
    demo.set_defaults(func=_demo)
    b = sub.add_parser("bench", help="time kernels (or, with 'training', whole training runs) against "
                       "NumPy, PyTorch and CuPy in the same run")
    b.add_argument("what", nargs="*", metavar="KERNEL",
                   help="kernels to time (matmul, linear, relu, sigmoid, tanh, *_grad, mse, mse_grad, "
                        "adam_update, sgd_update, copy; default all), or 'training'")
    b.add_argument("--backend", action="append", choices=["numpy", "cpu", "cuda"],
                   help="fusednn backend(s) to time (repeatable; default: every available one)")
    b.add_argument("--quick", action="store_true", help="fewer sizes (the ones the targets name)")
    b.add_argument("--repeats", type=int, default=7, help="timed repeats per measurement (median reported)")
    b.add_argument("--no-references", action="store_true", help="time fusednn only")
    b.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    b.add_argument("--plot", metavar="FILE.png", help="also draw the ratios (needs matplotlib)")
    b.add_argument("--workload", action="append", choices=["seed", "mlp"],
                   help="training workload(s) for 'bench training' (default both)")
    b.add_argument("--impl", action="append", help="implementations for 'bench training' (e.g. fusednn-cpu, "
                   "torch-cpu, numpy-loop, sklearn; default all installed)")
    b.add_argument("-v", "--verbose", action="store_true", help="report each measurement as it finishes")
    b.set_defaults(func=_bench)
    sv = sub.add_parser("serve", help="serve a saved model over HTTP: POST /predict, GET /health, GET /metadata "
                        '(needs the serve extra: pip install "fusednn[serve]")')
    sv.add_argument("model", metavar="MODEL", help="model file written by model.save() or fusednn train")
    sv.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    sv.add_argument("--port", type=_port, default=8000, help="TCP port (default 8000)")
    sv.add_argument("--max-batch", type=_positive_int, default=10_000, metavar="ROWS",
                    help="most rows per /predict request (default 10000; more: 413)")
    sv.add_argument("--max-body", type=_size, default=16 << 20, metavar="SIZE",
                    help="largest request body, e.g. 16MiB, 512KiB, 1048576 (default 16MiB; more: 413)")
    sv.add_argument("--max-inflight-body", type=_size, default=64 << 20, metavar="SIZE",
                    help="bytes of request bodies held at once over all requests (default 64MiB; more: 503)")
    sv.add_argument("--max-connections", type=_positive_int, default=512, metavar="N",
                    help="open connections (default 512); beyond it the oldest idle or slow one is closed, "
                         "or, when all are busy with requests, the new one gets 503")
    sv.add_argument("--header-timeout", type=_positive_float, default=10.0, metavar="S",
                    help="seconds a connection has to send a complete request head (default 10; then 408)")
    sv.add_argument("--body-timeout", type=_positive_float, default=60.0, metavar="S",
                    help="seconds a request has to send its whole body once its head is in (default 60)")
    sv.add_argument("--keep-alive", type=_positive_int, default=5, metavar="S",
                    help="seconds an idle keep-alive connection is kept open (default 5)")
    sv.add_argument("--backend", choices=["numpy", "cpu", "cuda"], default=None,
                    help="backend to run the model on (default: the active one)")
    sv.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                    help="uvicorn's log level (default info)")
    sv.add_argument("--access-log", action="store_true", help="log every request (off by default: it costs "
                    "throughput)")
    sv.set_defaults(func=_serve)
    tr = sub.add_parser("train", help="train a model on a CSV file (regression or classification) and save it, "
                        "with its feature scaling and class labels")
    tr.add_argument("data", metavar="DATA.csv", help="one row per sample, a header row naming the columns")
    tr.add_argument("--target", required=True, help="the column to predict (name, or 0-based number)")
    tr.add_argument("--task", choices=["regression", "classification"], default=None,
                    help="default: classification for text targets or at most 20 distinct integers")
    tr.add_argument("--layers", type=_layer_sizes, default=(64, 64), metavar="N,N",
                    help="hidden layer sizes (relu), default 64,64")
    tr.add_argument("--epochs", type=_positive_int, default=50, help="default 50")
    tr.add_argument("--batch-size", type=_positive_int, default=32, help="default 32")
    tr.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate, default 0.001")
    tr.add_argument("--validation-split", type=_fraction, default=0.1, metavar="F",
                    help="fraction of the training rows used for validation each epoch, default 0.1")
    tr.add_argument("--test-size", type=_fraction, default=0.2, metavar="F",
                    help="fraction of the rows held out for the test metrics, default 0.2")
    tr.add_argument("--outliers", choices=["none", "zscore", "iqr"], default="none",
                    help="also drop outlier rows (default none; rows with missing values are always dropped)")
    tr.add_argument("--seed", type=int, default=0, help="seed for the split, weights and shuffling")
    tr.add_argument("--backend", choices=["numpy", "cpu", "cuda"], default=None)
    tr.add_argument("--verbose", type=int, choices=[0, 1, 2], default=None,
                    help="0 silent, 1 progress bar, 2 a line per epoch (default: 1 on a terminal, else 2)")
    tr.add_argument("--out", required=True, type=_out_path, metavar="MODEL", help="where to save the model (.npz)")
    tr.add_argument("--ranks", type=_positive_int, default=None, metavar="N",
                    help="data-parallel training on N MPI ranks: re-runs itself under mpiexec (needs the mpi "
                         "extra); rank 0 prints and saves")
    tr.set_defaults(func=_train)
    ev = sub.add_parser("evaluate", help="metrics of a model saved by `fusednn train` on a labelled CSV file")
    ev.add_argument("model", metavar="MODEL")
    ev.add_argument("data", metavar="DATA.csv")
    ev.set_defaults(func=_evaluate)
    pr = sub.add_parser("predict", help="predictions of a model saved by `fusednn train` for each row of a CSV "
                        "file")
    pr.add_argument("model", metavar="MODEL")
    pr.add_argument("data", metavar="DATA.csv")
    pr.add_argument("--out", required=True, type=_out_path, metavar="PREDS.csv",
                    help="output CSV ('-': standard output)")
    pr.set_defaults(func=_predict)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # `train --ranks N` re-runs the same command line under mpiexec
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
