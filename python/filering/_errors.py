"""The exceptions of the filering package, and Loss.

Every exception the package raises for a ring is a subclass of Error. It names the file
it is about in .path (a segment, the manifest, or the ring directory), and says what is
wrong in .kind, one word of the conformance corpus's vocabulary
(testdata/conformance/README.md): "no-ring", "manifest", "not-regular", "size",
"header", "sealed-word", "committed-word", "record-size", "checksum", "sequence",
"missing", "last-seq"; or None for a failure that is not the ring's (a system call
failing for want of memory or descriptors, a permission).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds to import: only for type checkers
    from typing import Optional

__all__ = ["Error", "NoRingError", "ManifestError", "CorruptionError", "Loss"]


class Error(Exception):
    """The base class of every error about a ring.

    .path is the file (or ring directory) the error is about, .kind what is wrong (see
    the module documentation), .offset the byte offset in .path it is about, or None.
    .errno is the errno of a failed system call behind the error, or None.
    """

    path: Optional[str] = None
    kind: Optional[str] = None
    offset: Optional[int] = None
    errno: Optional[int] = None

    def __init__(
        self,
        message: str,
        path: Optional[str] = None,
        kind: Optional[str] = None,
        offset: Optional[int] = None,
        errno: Optional[int] = None,
    ) -> None:
        Exception.__init__(self, message)
        self.path = path
        self.kind = kind
        self.offset = offset
        self.errno = errno


class NoRingError(Error):
    """There is no ring: the directory does not exist or holds no manifest (yet).

    .path is the ring directory; .kind is "no-ring".
    """

    def __init__(self, message: str, path: Optional[str] = None, errno: Optional[int] = None) -> None:
        Error.__init__(self, message, path, "no-ring", None, errno)


class ManifestError(Error):
    """The manifest cannot be used: it breaks a rule of the format, is not a regular file,
    or cannot be read. Nothing of the ring is readable; .path names the manifest.

    .kind is "manifest" for a manifest that breaks a rule, "not-regular" for a
    symbolic link, FIFO or directory in its place, None when it could not be read.
    """


class CorruptionError(Error):
    """A listed segment (or a claimed one) is damaged.

    .path names the file, .offset the byte in it: the damaged record, or the header field
    that is wrong; None when the file is damaged as a whole (not a regular file, wrong
    size). .kind says what is wrong: "not-regular", "size", "header", "sealed-word",
    "committed-word" (segment-level: none of its records is delivered) or "record-size",
    "checksum", "sequence", "missing", "last-seq" (record-level: the records before
    .offset are delivered, none after). .reason is the message without the file.
    """

    reason: str

    def __init__(self, path: str, offset: Optional[int], kind: Optional[str], reason: str, errno: Optional[int] = None) -> None:
        if offset is None:
            message = "%s: %s" % (path, reason)
        else:
            message = "%s: corrupt at offset %d: %s" % (path, offset, reason)
        Error.__init__(self, message, path, kind, offset, errno)
        self.reason = reason


class Loss(tuple):
    """Records a follower will never see: sequence numbers .first to .last, inclusive.

    They were overwritten by the ring (retention), taken by a taker, lost in a producer
    crash, or skipped because they were damaged, before the follower reached them.
    str(loss) is "lost N records (A to B)", as `filering watch` reports it.
    """

    __slots__ = ()

    def __new__(cls, first: int, last: int) -> "Loss":
        return tuple.__new__(cls, (first, last))

    @property
    def first(self) -> int:
        """The first sequence number lost."""
        return self[0]  # type: ignore[no-any-return]

    @property
    def last(self) -> int:
        """The last sequence number lost."""
        return self[1]  # type: ignore[no-any-return]

    @property
    def count(self) -> int:
        """How many records were lost."""
        return self[1] - self[0] + 1  # type: ignore[no-any-return]

    def __str__(self) -> str:
        return "lost %d records (%d to %d)" % (self.count, self[0], self[1])

    def __repr__(self) -> str:
        return "Loss(first=%d, last=%d)" % (self[0], self[1])
