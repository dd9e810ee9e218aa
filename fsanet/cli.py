"""The single `fsanet` command; each subcommand imports its stage only when it runs.

Exit codes: 0 success, 1 budget violated, 2 bad input or usage.
"""

from __future__ import annotations

import argparse
import sys

from fsanet import __version__
from fsanet.errors import FsanetError


def _import_keras(args) -> int:
    from fsanet.importer import import_keras
    from fsanet.keras_weights import stored_values
    from fsanet.model import variant_name

    model = import_keras(args.files, args.output)
    members = getattr(model, "members", [model])
    for f, m in zip(args.files, members, strict=True):
        print(f"{f}: {variant_name(m.config)}, {stored_values(m):,} values")
    kind = f"fusion of {len(members)}" if len(members) > 1 else "model"
    print(f"wrote {args.output} ({kind}, {stored_values(model):,} values)")
    return 0


def _eval(args) -> int:
    from fsanet.evaluate import evaluate, format_result

    print(format_result(evaluate(args.model, args.data, args.json)))
    return 0


def _variants(args) -> int:
    from fsanet.model import FUSION_MEMBERS, VARIANTS

    for name, cfg in VARIANTS.items():
        print(f"{name:22s} {cfg}")
    print(f"fusion = mean of {', '.join(FUSION_MEMBERS)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fsanet", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"fsanet-edge {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("import-keras", help="the authors' .h5 weights -> checkpoint (several files: fusion)")
    s.add_argument("files", nargs="+", help="Keras .h5 files of the released models")
    s.add_argument("-o", "--output", required=True, help="checkpoint to write (.pt)")
    s.set_defaults(run=_import_keras)

    s = sub.add_parser("eval", help="MAE of a model on a labelled set")
    s.add_argument("model", help="checkpoint (.pt)")
    s.add_argument("--data", required=True, help="AFLW2000/300W-LP folder, BIWI folder or .npz")
    s.add_argument("--json", help="also write the result as JSON here")
    s.set_defaults(run=_eval)

    s = sub.add_parser("variants", help="list the named configurations")
    s.set_defaults(run=_variants)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except FsanetError as e:
        print(f"fsanet {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
