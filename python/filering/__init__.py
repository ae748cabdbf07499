"""filering: read, follow and take the records of a filering ring, with the standard library.

A producer appends records to fixed-size segments in a ring directory on tmpfs
(docs/FORMAT.md); any number of readers read them without locks:

    import filering

    ring = filering.open("/run/ring/sensor")
    for rec in ring.last(1000):                 # a consistent snapshot, oldest first
        print(rec.seq, rec.time, rec.text)
    for rec in ring.follow(last=10):            # then every new record, as it comes
        ...
    async for rec in ring.afollow(last=0):      # the same under asyncio
        ...
    for rec in ring.take():                     # single consumer: each sealed segment once
        ...
    print(ring.stat())

Records are Record tuples (seq, time_ns, data). Errors are Error and its subclasses
NoRingError, ManifestError and CorruptionError, which name the file, the offset and
what is wrong (.path, .offset, .kind). From a shell, `python3 -m filering cat|watch|take|
stat|wait` prints what the `filering` command prints, byte for byte.

Linux only (inotify, renameat2, OFD locks); Python 3.8 or newer; no dependencies.
"""

from ._errors import CorruptionError, Error, Loss, ManifestError, NoRingError
from ._format import Record, format_json, format_records, format_time
from ._manifest import Entry, Manifest, parse_manifest
from ._ring import Ring, Stat, open

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._follow import AsyncFollower, Follower
    from ._take import Claim, Taker

__version__ = "0.1.0"

__all__ = [
    "open",
    "Ring",
    "Record",
    "Stat",
    "Loss",
    "Follower",
    "AsyncFollower",
    "Taker",
    "Claim",
    "Manifest",
    "Entry",
    "Error",
    "NoRingError",
    "ManifestError",
    "CorruptionError",
    "parse_manifest",
    "format_json",
    "format_records",
    "format_time",
]


def __getattr__(name: str) -> object:
    # Followers and takers import more (ctypes, select, asyncio): only when asked for.
    if name in ("Follower", "AsyncFollower"):
        from . import _follow

        return getattr(_follow, name)
    if name in ("Taker", "Claim"):
        from . import _take

        return getattr(_take, name)
    raise AttributeError("module 'filering' has no attribute %r" % (name,))
