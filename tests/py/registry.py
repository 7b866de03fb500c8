"""A small Confluent-compatible schema registry for the tests (the API subset the confluent-kafka
serializers and Lakesink use), with HTTP basic auth. Prints its port, then serves until killed.

Usage: registry.py USER PASSWORD
"""
import base64
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

USER, PASSWORD = sys.argv[1], sys.argv[2]
lock = threading.Lock()
schemas = []  # id - 1 -> {"schema", "schemaType"}
subjects = {}  # subject -> [id, ...] (versions)


def entry(i):
    s = dict(schemas[i - 1])
    if s.get("schemaType") == "AVRO":
        del s["schemaType"]
    return s


class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authorized(self):
        want = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != want:
            self.send(401, {"error_code": 401, "message": "Unauthorized"})
            return False
        return True

    def parts(self):
        return [p for p in self.path.split("?")[0].split("/") if p]

    def do_GET(self):
        if not self.authorized():
            return
        p = self.parts()
        with lock:
            if len(p) == 3 and p[:2] == ["schemas", "ids"]:
                i = int(p[2])
                if 0 < i <= len(schemas):
                    return self.send(200, entry(i))
            elif len(p) == 4 and p[0] == "subjects" and p[2] == "versions":
                versions = subjects.get(p[1])
                if versions:
                    v = len(versions) if p[3] in ("latest", "-1") else int(p[3])
                    if 0 < v <= len(versions):
                        i = versions[v - 1]
                        return self.send(200, {"subject": p[1], "version": v, "id": i, **entry(i)})
            elif p == ["subjects"]:
                return self.send(200, sorted(subjects))
        self.send(404, {"error_code": 40403, "message": "Schema not found"})

    def do_POST(self):
        if not self.authorized():
            return
        p = self.parts()
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        s = {"schema": body["schema"], "schemaType": body.get("schemaType", "AVRO")}
        with lock:
            i = schemas.index(s) + 1 if s in schemas else None
            if len(p) == 3 and p[0] == "subjects" and p[2] == "versions":
                if i is None:
                    schemas.append(s)
                    i = len(schemas)
                versions = subjects.setdefault(p[1], [])
                if i not in versions:
                    versions.append(i)
                return self.send(200, {"id": i})
            if len(p) == 2 and p[0] == "subjects":
                versions = subjects.get(p[1], [])
                if i in versions:
                    return self.send(200, {"subject": p[1], "version": versions.index(i) + 1, "id": i, **entry(i)})
        self.send(404, {"error_code": 40403, "message": "Schema not found"})


server = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(server.server_address[1], flush=True)
server.serve_forever()
