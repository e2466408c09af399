"""Write the compile-time fix-ups that Rekor v1 and Trillian need against Debian's Go packages.

Usage: python3 make_overlay.py GOPATH_SRC OUT_DIR

GOPATH_SRC is the `src` folder of the GOPATH unpacked from Debian's golang-*-dev packages. The
fix-ups are written to OUT_DIR together with OUT_DIR/overlay.json for `go build -overlay`; the
unpacked source tree is left alone except for one file that `go:embed` needs (embedding does not
look at overlays). Each fix-up answers a real build error seen with Debian sid's packages:

1. trillian cmd/internal/provider/{crdb,postgresql}.go: their drivers are missing or too new in
   Debian; replaced by an empty file (Trillian keeps its MySQL storage).
2. trillian monitoring/opencensus/trace.go: the stackdriver exporter is not packaged; the
   exporter branch returns an error instead.
3. trillian cmd/internal/serverutil/main.go: imports go-grpc-middleware v1's chain helper, but
   Debian ships v2 at the v1 import path; grpc's own ChainUnaryInterceptor does the same job.
4. rekor cmd/rekor-server/app/serve.go: the rpm and tuf entry types are not packaged (dropped),
   and the Prometheus metrics listener bound every interface on :2112 (now loopback only, and
   its port can be moved with REKOR_METRICS_ADDR so that several servers can run side by side).
5. rekor pkg/generated/restapi/rekorHomePage.html: the `go:embed` target is missing from the
   -dev package.

Every fix-up checks that the text it replaces is there, and stops with a message naming the
fix-up when Debian's source has moved on.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path


class FixupError(Exception):
    """The upstream text a fix-up expects is not there (Debian's source moved on)."""


def _replace_once(text: str, old: str, new: str, what: str) -> str:
    if old not in text:
        raise FixupError(f"{what}: expected text not found: {old[:80]!r}")
    return text.replace(old, new, 1)


def _drop_lines(text: str, pattern: str, what: str, *, expect: int) -> str:
    lines = text.splitlines(keepends=True)
    kept = [line for line in lines if not re.search(pattern, line)]
    dropped = len(lines) - len(kept)
    if dropped != expect:
        raise FixupError(
            f"{what}: expected to drop {expect} line(s) matching {pattern!r}, found {dropped}"
        )
    return "".join(kept)


def trace_go(text: str) -> str:
    what = "trillian monitoring/opencensus/trace.go"
    text = _drop_lines(text, r"contrib\.go\.opencensus\.io/exporter/stackdriver", what, expect=1)
    block = re.compile(
        r"^[ \t]*sde, err := stackdriver\.NewExporter.*?trace\.RegisterExporter\(sde\)[^\n]*\n",
        re.DOTALL | re.MULTILINE,
    )
    text, count = block.subn('\treturn errors.New("stackdriver exporter not available")\n', text)
    if count != 1:
        raise FixupError(f"{what}: stackdriver exporter block not found")
    if '"errors"' not in text:
        raise FixupError(f"{what}: the file no longer imports errors")
    return text


def serverutil_go(text: str) -> str:
    what = "trillian cmd/internal/serverutil/main.go"
    text = _replace_once(
        text, '\tgrpc_middleware "github.com/grpc-ecosystem/go-grpc-middleware"\n', "", what
    )
    return _replace_once(
        text,
        "grpc.UnaryInterceptor(grpc_middleware.ChainUnaryServer(\n"
        "\t\t\tstats.Interceptor(),\n\t\t\tinterceptor.ErrorWrapper,\n\t\t\tti.UnaryInterceptor,\n\t\t)),",
        "grpc.ChainUnaryInterceptor(\n"
        "\t\t\tstats.Interceptor(),\n\t\t\tinterceptor.ErrorWrapper,\n\t\t\tti.UnaryInterceptor,\n\t\t),",
        what,
    )


def serve_go(text: str) -> str:
    what = "rekor cmd/rekor-server/app/serve.go"
    text = _drop_lines(text, r'pkg/types/(rpm|tuf)(/v0\.0\.1)?"', what, expect=4)
    text = _drop_lines(text, r"^\s*(rpm|tuf)\.KIND:", what, expect=2)
    text = _replace_once(
        text,
        'Addr:         ":2112",',
        "Addr:         metricsAddr(),",
        what,
    )
    if '\t"os"\n' not in text:
        text = _replace_once(text, "import (\n", 'import (\n\t"os"\n', what)
    return text + (
        "\n// metricsAddr: the Prometheus listener, loopback only, movable (REKOR_METRICS_ADDR).\n"
        "func metricsAddr() string {\n"
        '\tif a := os.Getenv("REKOR_METRICS_ADDR"); a != "" {\n'
        "\t\treturn a\n\t}\n"
        '\treturn "127.0.0.1:2112"\n'
        "}\n"
    )


def main(argv: list[str]) -> int:
    if len(argv) != 3:  # noqa: PLR2004 (program name + two arguments)
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    src, out = Path(argv[1]), Path(argv[2])
    out.mkdir(parents=True, exist_ok=True)
    trillian = src / "github.com/google/trillian"
    rekor = src / "github.com/sigstore/rekor"
    replace: dict[str, str] = {}
    try:
        empty = out / "empty-provider.go"
        empty.write_text("package provider\n")
        for name in ("crdb.go", "postgresql.go"):
            path = trillian / "cmd/internal/provider" / name
            path.stat()  # OSError (caught below) when Debian's source no longer has it
            replace[str(path)] = str(empty)
        for upstream, fix, name in (
            (trillian / "monitoring/opencensus/trace.go", trace_go, "trace.go"),
            (trillian / "cmd/internal/serverutil/main.go", serverutil_go, "serverutil.go"),
            (rekor / "cmd/rekor-server/app/serve.go", serve_go, "serve.go"),
        ):
            fixed = out / name
            fixed.write_text(fix(upstream.read_text()))
            replace[str(upstream)] = str(fixed)
    except (FixupError, OSError) as exc:
        print(f"make_overlay: fix-up failed: {exc}", file=sys.stderr)
        return 1
    home = rekor / "pkg/generated/restapi/rekorHomePage.html"
    if not home.exists():
        home.write_text("<html><body>Rekor</body></html>\n")
    (out / "overlay.json").write_text(json.dumps({"Replace": replace}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
