"""Alert channels: one contract every channel keeps (the alert arrives whole; a dead receiver raises), and delivery that
keeps what failed and retries it, against real receivers (a local HTTP server, a file, the logging system)."""
import json, logging, socket, threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from mlops_nb.core.alerts import AlertError, FileChannel, LogChannel, WebhookChannel, channel, make_alert, pending, retry_pending, send_alert
from mlops_nb.core.config import resolve_settings


class Receiver:
    "A local webhook receiver that records the JSON bodies POSTed to it."
    def __init__(self, port=0):
        self.got = []
        outer = self
        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get('Content-Length', 0)); outer.got.append(json.loads(self.rfile.read(n)))
                self.send_response(204); self.end_headers()
            def log_message(self, *a): pass
        self.srv = HTTPServer(('127.0.0.1', port), H)
        self.port = self.srv.server_port
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
    def close(self): self.srv.shutdown(); self.srv.server_close()


def free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@pytest.fixture
def receiver():
    r = Receiver(); yield r; r.close()


class LogKit:
    def __init__(self, caplog): self.caplog = caplog; caplog.set_level(logging.WARNING, 'mlops_nb.alerts')
    def channel(self): return LogChannel()
    def received(self): return [r.getMessage() for r in self.caplog.records if r.name == 'mlops_nb.alerts']

class FileKit:
    def __init__(self, tmp_path): self.path = tmp_path/'alerts'/'a.jsonl'; self.tmp = tmp_path
    def channel(self): return FileChannel(self.path)
    def received(self): return [json.loads(l) for l in self.path.read_text().splitlines()] if self.path.exists() else []
    def dead(self):
        (self.tmp/'blocker').write_text('a file where a folder should be')
        return FileChannel(self.tmp/'blocker'/'a.jsonl')

class WebhookKit:
    def __init__(self, receiver): self.r = receiver
    def channel(self): return WebhookChannel(f"http://127.0.0.1:{self.r.port}/hooks/T000/SECRET-PATH", timeout=3)
    def received(self): return self.r.got
    def dead(self): return WebhookChannel(f"http://127.0.0.1:{free_port()}/hooks/T000/SECRET-PATH", timeout=3)


@pytest.fixture(params=['log', 'file', 'webhook'])
def kit(request, tmp_path, caplog, receiver):
    return {'log': lambda: LogKit(caplog), 'file': lambda: FileKit(tmp_path), 'webhook': lambda: WebhookKit(receiver)}[request.param]()


ALERT = make_alert('quota.soft', 'train used 85% of its 5 CPU-hours in the last 1d', value=4.25, limit=5, unit='CPU-hours',
                   run_id='0123456789abcdef0123456789abcdef', link='http://127.0.0.1:5000/#/runs/0123', project='churn')


def test_contract_the_alert_arrives_whole(kit):
    kit.channel().send(ALERT)
    got = kit.received()
    assert len(got) == 1
    if isinstance(got[0], dict): assert got[0] == ALERT
    else: assert ALERT['message'] in got[0] and ALERT['kind'] in got[0]


@pytest.fixture(params=['file', 'webhook'])
def kit_that_can_fail(request, tmp_path, receiver):  # logging has no receiver that can be down
    return {'file': lambda: FileKit(tmp_path), 'webhook': lambda: WebhookKit(receiver)}[request.param]()


def test_contract_a_dead_receiver_raises_alert_error_without_the_secret(kit_that_can_fail):
    with pytest.raises(AlertError) as e: kit_that_can_fail.dead().send(ALERT)
    assert 'SECRET-PATH' not in str(e.value)


def test_an_undelivered_alert_is_kept_and_retried_when_the_receiver_is_back(project):
    port = free_port()
    (project/'pyproject.toml').write_text(f'[project]\nname = "demo-project"\n[tool.mlops_nb]\nalerts = ["log", "webhook:http://127.0.0.1:{port}/hook"]\n')
    s = resolve_settings()
    failed = send_alert(ALERT, s)          # the receiver is down: nothing raises, the alert waits
    assert failed == [f"webhook:http://127.0.0.1:{port}/hook"] and [p['alert']['id'] for p in pending(s)] == [ALERT['id']]
    back = Receiver(port)
    try:
        assert retry_pending(s) == 1 and pending(s) == [] and back.got == [ALERT]
    finally: back.close()


def test_a_webhook_url_can_come_from_the_environment(receiver, monkeypatch):
    monkeypatch.setenv('ALERT_HOOK', f"http://127.0.0.1:{receiver.port}/x")
    ch = channel('webhook:${ALERT_HOOK}')
    ch.send(ALERT)
    assert receiver.got == [ALERT] and '127.0.0.1' not in ch.name  # the spec, not the secret, is what is kept
