"""Ask an EGD/PRNGD socket in the jail for its entropy level (command 0x00).

The socket is reached through an O_PATH descriptor on the node itself
(``/proc/self/fd/N``), so a symlink swapped in after the check cannot redirect us to a host
socket. Only the harmless "how much entropy do you have" query is sent.
"""

from __future__ import annotations

from dataclasses import dataclass

# OpenSSL's EGD paths (e_os.h / include/crypto/rand.h DEVRANDOM_EGD).
EGD_PATHS = ("/var/run/egd-pool", "/dev/egd-pool", "/etc/egd-pool", "/etc/entropy")
TIMEOUT = 0.5


@dataclass(frozen=True)
class EgdAnswer:
    alive: bool
    entropy_bits: int | None  # what the daemon says it holds
    reason: str  # why it is not alive, or "answered"


def query(node_fd: int, timeout: float = TIMEOUT) -> EgdAnswer:
    import socket  # only a jail with an EGD socket pays for it

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(f"/proc/self/fd/{node_fd}")
        except ConnectionRefusedError:
            return EgdAnswer(False, None, "connection refused: no daemon listens on it")
        except TimeoutError:
            return EgdAnswer(False, None, f"no answer to connect within {timeout} s")
        except OSError as e:
            return EgdAnswer(False, None, f"cannot connect: {e.strerror or e}")
        try:
            sock.sendall(b"\x00")
            data = b""
            while len(data) < 4:
                chunk = sock.recv(4 - len(data))
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            return EgdAnswer(False, None, f"connected, but no answer within {timeout} s")
        except OSError as e:
            return EgdAnswer(False, None, f"connected, but the query failed: {e.strerror or e}")
        if len(data) != 4:
            return EgdAnswer(False, None, "connected, but the answer is not EGD's (closed early)")
        return EgdAnswer(True, int.from_bytes(data, "big"), "answered")
    finally:
        sock.close()
