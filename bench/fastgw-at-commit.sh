#!/bin/sh
# Another build of fastgw as an e2e peer, for before/after runs in the same run:
#
#   git worktree add --detach ../fastgw-before COMMIT
#   (cd ../fastgw-before && python setup.py -q build_ext --inplace)
#   FASTGW_CHECKOUT=../fastgw-before python -m bench.e2e --peers fastgw,before,nginx \
#       --peer-cmd "before=bench/fastgw-at-commit.sh {port} {upstream_port} {workdir}"
#
# It serves the plain scenario's configuration (bench/e2e/scenarios.py) from that checkout,
# with $FASTGW_PYTHON (default: the python3 on PATH, e.g. the activated .venv's).
set -e
port=$1 upstream_port=$2 workdir=$3
: "${FASTGW_CHECKOUT:?set FASTGW_CHECKOUT to a checkout with its core built}"
python=${FASTGW_PYTHON:-python3}
case "$python" in */*) python=$(cd "$(dirname "$python")" && pwd)/$(basename "$python") ;; esac
cat > "$workdir/before.yaml" <<YAML
listen: ["127.0.0.1:$port"]
upstreams:
  backend: {targets: [{url: "http://127.0.0.1:$upstream_port"}], keepalive: {max_idle: 64, idle_timeout: 60s}}
routes:
  - {name: all, match: {paths: ["/{*rest}"]}, upstream: backend}
YAML
FASTGW_CHECKOUT=$(cd "$FASTGW_CHECKOUT" && pwd)
cd "$FASTGW_CHECKOUT"
PYTHONPATH="$FASTGW_CHECKOUT" exec "$python" -m fastgw run -c "$workdir/before.yaml"
