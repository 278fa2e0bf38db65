"""The pure core (and the batch replay built on it) must not import any Kafka-side library."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("faust", "aiokafka", "fastavro", "prometheus_client", "mode")


def test_core_and_batch_import_no_kafka_avro_or_prometheus_library() -> None:
    code = (
        "import json, sys, pkgutil, importlib, streams.core\n"
        "for m in pkgutil.iter_modules(streams.core.__path__):\n"
        "    importlib.import_module('streams.core.' + m.name)\n"
        "import streams.batch, streams.tools.simulate.generator\n"
        "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules})))"
    )
    loaded = set(json.loads(subprocess.check_output([sys.executable, "-c", code], text=True)))
    assert "streams" in loaded
    assert loaded.isdisjoint(FORBIDDEN), loaded & set(FORBIDDEN)
