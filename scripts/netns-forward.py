"""Forwards 127.0.0.1:LISTEN (this network namespace) to 127.0.0.1:TARGET inside the network
namespace of process PID, for a server that must not listen on the host's addresses (the Hive
Metastore binds every address). Usage: netns-forward.py LISTEN PID TARGET"""
import ctypes
import os
import socket
import sys
import threading

CLONE_NEWNET = 0x40000000

listen_port, pid, target = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", listen_port))
server.listen(64)

# From here on this (only) thread connects inside the target's namespace; the listening socket
# stays in ours.
fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
    sys.exit(f"setns: {os.strerror(ctypes.get_errno())}")


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


while True:
    client, _ = server.accept()
    try:
        upstream = socket.create_connection(("127.0.0.1", target), timeout=10)
        upstream.settimeout(None)
    except OSError:
        client.close()
        continue
    threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
    threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
