"""Copy a checkpoint with new test-time sampling defaults (weights untouched), recording why.

    python scripts/set_sampling.py SRC DST --set lebm.posterior_steps=80 --reason "chosen on validation: ..."

Allowed fields: lsdebm.runtime.checkpoint.SAMPLING_FIELDS. DST may equal SRC with --overwrite.
"""
import argparse
import sys

from lsdebm.config import parse_sets
from lsdebm.errors import LsdebmError
from lsdebm.nn.slabnet import SlabNet
from lsdebm.runtime.checkpoint import with_sampling_settings

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("src")
p.add_argument("dst")
p.add_argument("--set", dest="sets", action="append", required=True, metavar="SECTION.FIELD=VALUE")
p.add_argument("--reason", required=True)
p.add_argument("--overwrite", action="store_true")
args = p.parse_args()
try:
    print(with_sampling_settings(args.src, args.dst, parse_sets(args.sets), args.reason, overwrite=args.overwrite,
                                 extra_kinds={SlabNet.kind: SlabNet}))
except LsdebmError as exc:
    sys.exit(f"error: {exc}")
