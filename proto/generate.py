"""Generate the Python code for the `tongban.v1` contracts into `exchange/generated/`.

protoc writes modules under `tongban/v1/` that import each other as `tongban.v1.*`;
this script flattens them into one package and rewrites those imports, so the
generated code has one home. `make proto` runs it; `--check` compares instead of
writing and exits 1 when the checked-in code is stale.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
TARGET = ROOT / "exchange" / "generated"
PACKAGE = "exchange.generated"
BIN = Path(sys.executable).parent  # the plug-ins come with mypy-protobuf
HEADER = '"""Generated from proto/tongban/v1 by `make proto`. Do not edit."""\n'


def _rewrite(text: str) -> str:
    text = re.sub(r"^from tongban\.v1 import ", f"from {PACKAGE} import ", text, flags=re.M)
    # mypy-protobuf stubs refer to sibling modules by their dotted path.
    text = re.sub(r"^import tongban\.v1\.(\w+)$", rf"import {PACKAGE}.\1", text, flags=re.M)
    return re.sub(r"\btongban\.v1\.(\w+_pb2)\b", rf"{PACKAGE}.\1", text)


def generate(out: Path) -> None:
    """Run protoc on every contract and write the flattened package into `out`."""
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as raw:
        args = [
            "protoc",
            f"-I{PROTO_DIR}",
            f"-I{Path(protoc.__file__).parent / '_proto'}",
            f"--plugin=protoc-gen-mypy={BIN / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={BIN / 'protoc-gen-mypy_grpc'}",
            f"--python_out={raw}",
            f"--grpc_python_out={raw}",
            f"--mypy_out={raw}",
            f"--mypy_grpc_out={raw}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        out.mkdir(parents=True, exist_ok=True)
        for path in sorted((Path(raw) / "tongban" / "v1").iterdir()):
            (out / path.name).write_text(_rewrite(path.read_text()))
    (out / "__init__.py").write_text(HEADER)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    if not args.check:
        shutil.rmtree(TARGET, ignore_errors=True)
        generate(TARGET)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        expected = {p.name: p.read_text() for p in fresh.iterdir()}
        actual = {p.name: p.read_text() for p in TARGET.glob("*") if p.is_file()}
    stale = sorted(n for n in expected.keys() | actual.keys() if expected.get(n) != actual.get(n))
    if stale:
        print(f"exchange/generated is stale ({', '.join(stale)}): run `make proto`")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
