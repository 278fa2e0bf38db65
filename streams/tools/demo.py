"""`cemi demo`: broker + worker + live simulator, with a live terminal view of the scores.

The worker runs as a subprocess (`cemi worker`); this process only talks Kafka (aiokafka,
through streams.tools.tail) and reads the worker's /api/v1/stats. No Faust here. One module
for the demo's state, view and processes: the three change together, and none serves
anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pydantic import SecretStr
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from streams.broker import broker_for, free_port
from streams.core.events import SERVICES
from streams.kafka_security import client_kwargs
from streams.settings import Settings
from streams.tools.simulate.generator import DEFAULT_UNITS
from streams.tools.simulate.runner import simulate
from streams.tools.tail import read_topic
from streams.topics import create_topics

CLASS_STYLES: Final = {
    "poor": "bold red",
    "average": "dark_orange",
    "fair": "yellow",
    "good": "green",
    "excellent": "bold bright_green",
}
SHOWN_LEVELS: Final = frozenset({"network", "unit", "service", "touchpoint"})
WAITING: Final = "waiting for the worker (joining the broker takes ~10 s)..."
REFRESH_S: Final = 0.5
SNAPSHOT_EVERY_S: Final = 15.0  # when stdout is not a terminal: print the view this often
STATS_EVERY_S: Final = 1.0
RATE_SAMPLES: Final = 6  # events/s over the last ~5 s of stats
WORKER_STOP_S: Final = 10.0
SCENARIO: Final = "install_backlog"
NON_TTY_WIDTH: Final = 140

Key = tuple[str, str | None, str | None, str | None, str, int]


# --- state -------------------------------------------------------------------------------


@dataclass
class Board:
    """What the view shows; filled by the reader tasks, read by the renderer (one loop)."""

    units: tuple[str, ...]
    scores: dict[Key, dict[str, Any]] = field(default_factory=dict)
    alerts: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)
    # the newest day's unit ranking (cx.cemi.standings): unit -> its standing
    ranking: dict[str, dict[str, Any]] = field(default_factory=dict)
    ranking_start_ms: int = -1
    # the newest day's programme records (cx.cemi.programmes) per (programme, unit, indicator)
    programmes: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    console_url: str = ""  # the worker's ops console
    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=RATE_SAMPLES))
    problems: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def add_score(self, record: dict[str, Any]) -> None:
        if record.get("window") != "day" or record.get("level") not in SHOWN_LEVELS:
            return
        key: Key = (
            record["level"],
            record.get("unit"),
            record.get("service"),
            record.get("touchpoint"),
            record["window"],
            record["window_start_ms"],
        )
        old = self.scores.get(key)
        if old is None or record.get("revision", 0) >= old.get("revision", 0):
            self.scores[key] = record

    def add_standings(self, record: dict[str, Any]) -> None:
        """Keep the newest day's ranking of the units by unit CEMI."""
        if record.get("window") != "day" or record.get("service") is not None:
            return
        if record.get("window_start_ms", -1) >= self.ranking_start_ms:
            self.ranking_start_ms = record["window_start_ms"]
            self.ranking = {entry["unit"]: entry for entry in record.get("units", [])}

    def add_programme(self, record: dict[str, Any]) -> None:
        if record.get("window") != "day":
            return
        key = (record["programme"], record["unit"], record["indicator"])
        old = self.programmes.get(key)
        if old is None or record["window_start_ms"] >= old["window_start_ms"]:
            self.programmes[key] = record

    def add_alert(self, record: dict[str, Any]) -> None:
        if "undecodable" in record:
            return
        key = (record.get("unit"), record.get("service"), record.get("touchpoint"))
        self.alerts.pop(key, None)  # re-insert: newest last
        self.alerts[key] = record

    def add_stats(self, stats: dict[str, Any], now: float) -> None:
        self.stats = stats
        self.samples.append((now, int(stats.get("consumed", 0))))

    def events_per_s(self) -> float | None:
        if len(self.samples) < 2:
            return None
        (t0, c0), (t1, c1) = self.samples[0], self.samples[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else None

    def today(self) -> dict[Key, dict[str, Any]]:
        """The records of the newest day window."""
        if not self.scores:
            return {}
        newest = max(key[5] for key in self.scores)
        return {key: r for key, r in self.scores.items() if key[5] == newest}


# --- rendering ---------------------------------------------------------------------------


def score_text(record: dict[str, Any] | None, with_class: bool = True) -> Text:
    if record is None or record.get("score") is None:
        return Text("–", style="dim")
    cls = record.get("class") or ""
    label = f"{record['score']:.2f}" + (f" {cls}" if with_class else "")
    return Text(label, style=CLASS_STYLES.get(cls, ""))


def units_table(board: Board, today: dict[Key, dict[str, Any]]) -> Table:
    by = {(k[0], k[1], k[2]): r for k, r in today.items() if k[0] in ("unit", "service")}
    table = Table(title="Day CEMI by unit and service, ranked", expand=False)
    table.add_column("rank", justify="right")
    table.add_column("unit", style="bold")
    table.add_column("CEMI", justify="right")
    for service in SERVICES:
        table.add_column(service, justify="right")
    ranked = sorted(board.units, key=lambda u: board.ranking.get(u, {}).get("rank", 10**6))
    for unit in ranked:
        cells = [score_text(by.get(("service", unit, s)), with_class=True) for s in SERVICES]
        table.add_row(
            rank_text(board.ranking.get(unit)),
            unit,
            score_text(by.get(("unit", unit, None))),
            *cells,
        )
    return table


def rank_text(standing: dict[str, Any] | None) -> Text:
    """The unit's rank in the day's standings, and its move since the day before."""
    if standing is None:
        return Text("–", style="dim")
    rank, before = standing["rank"], standing.get("rank_prev")
    if before is None or before == rank:
        return Text(f"{rank}")
    arrow, style = ("↑", "green") if before > rank else ("↓", "red")
    return Text(f"{rank} {arrow}{abs(before - rank)}", style=style)


def worst_panel(today: dict[Key, dict[str, Any]], limit: int = 5) -> Panel:
    rows = [r for k, r in today.items() if k[0] == "touchpoint" and r.get("score") is not None]
    rows.sort(key=lambda r: r["score"])
    table = Table.grid(padding=(0, 2))
    for record in rows[:limit]:
        table.add_row(
            record.get("unit") or "",
            record.get("service") or "",
            record.get("touchpoint") or "",
            score_text(record),
        )
    body: RenderableType = table if rows else Text("no touchpoint scores yet", style="dim")
    return Panel(body, title=f"{limit} worst touchpoints")


def alert_row(record: dict[str, Any]) -> list[RenderableType]:
    kpis = record.get("top_kpis") or []
    if isinstance(kpis, list):
        kpis = ", ".join(str(k.get("kpi", k)) if isinstance(k, dict) else str(k) for k in kpis)
    score = record.get("score")
    state = str(record.get("state") or "")
    return [
        Text(state, style="bold red" if state in ("firing", "open", "raised") else ""),
        record.get("unit") or "",
        record.get("service") or "",
        record.get("touchpoint") or "",
        f"{score:.2f}" if isinstance(score, float | int) else "",
        str(kpis),
    ]


def alerts_panel(board: Board, limit: int = 5) -> Panel:
    if not board.alerts:
        return Panel(Text("no alerts yet", style="dim"), title="Alerts")
    table = Table.grid(padding=(0, 2))
    for record in list(board.alerts.values())[-limit:][::-1]:
        table.add_row(*alert_row(record))
    return Panel(table, title=f"Alerts ({len(board.alerts)})")


def programmes_panel(board: Board) -> Panel:
    """Each action programme's indicators today: value against the target in force."""
    table = Table.grid(padding=(0, 2))
    for (programme, unit, indicator), record in sorted(board.programmes.items()):
        value, attained = record.get("value"), record.get("attainment")
        shown = "–" if value is None else f"{value:g}"
        progress = "–" if attained is None else f"{attained:.0%}"
        style = "green" if record.get("on_track") else "red"
        effects = " ".join(
            f"{e['kpi']} {e['unit_delta']:+.2f}"
            for e in record.get("effect", [])
            if e.get("unit_delta") is not None
        )
        table.add_row(
            f"{programme} {unit}",
            indicator,
            f"{shown} / {record['target']:g}",
            Text(progress, style=style),
            Text(effects, style="dim"),
        )
    if not board.programmes:
        return Panel(Text("no programme updates yet", style="dim"), title="Action programmes")
    return Panel(table, title="Action programmes (value / target, attainment, effect)")


def status_line(board: Board) -> Text:
    rate = board.events_per_s()
    elapsed = int(time.monotonic() - board.started)
    dead = sum((board.stats.get("dead_lettered") or {}).values())
    text = Text.assemble(
        ("events/s ", "dim"),
        (f"{rate:,.0f}" if rate is not None else "–", "bold"),
        ("  consumed ", "dim"),
        f"{board.stats.get('consumed', 0):,}",
        ("  published ", "dim"),
        f"{board.stats.get('published_records', 0):,} records",
        ("  dead-lettered ", "dim"),
        (f"{dead:,}", "bold red" if dead else ""),
        ("  elapsed ", "dim"),
        f"{elapsed // 60}:{elapsed % 60:02d}",
    )
    for problem in board.problems[-3:]:
        text.append(f"\n{problem}", style="bold red")
    return text


def header(board: Board, today: dict[Key, dict[str, Any]]) -> Text:
    network = next((r for k, r in today.items() if k[0] == "network"), None)
    any_record = next(iter(today.values()), None)
    day = str(any_record["window_start"])[:10] if any_record else "–"
    text = Text.assemble(("CEMI live demo", "bold"), f"  day {day}")
    if network is not None:
        text.append("  network ")
        text.append_text(score_text(network))
    text.append(
        f"   ({SCENARIO} on {board.units[0]} from +20 s for 15 min; alerts after a 5-min hold)",
        style="dim",
    )
    if board.console_url:
        text.append(f"   console {board.console_url}", style="dim")
    return text


def render(board: Board) -> RenderableType:
    today = board.today()
    if not today:
        return Group(Text(WAITING, style="bold yellow"), status_line(board))
    side = Table.grid(padding=(0, 1))
    side.add_row(worst_panel(today), alerts_panel(board))
    return Group(
        header(board, today),
        units_table(board, today),
        side,
        programmes_panel(board),
        status_line(board),
    )


# --- background tasks --------------------------------------------------------------------


async def follow_topic(
    url: str, topic: str, add: Callable[[dict[str, Any]], None], security: dict[str, Any]
) -> None:
    async for _, record in read_topic(url, topic, from_beginning=True, security=security):
        add(record)


def fetch_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310 - our loopback URL
        stats: dict[str, Any] = json.loads(response.read())
        return stats


async def poll_stats(url: str, board: Board) -> None:
    while True:
        with contextlib.suppress(OSError, ValueError):  # not listening yet / half-started
            board.add_stats(await asyncio.to_thread(fetch_stats, url), time.monotonic())
        await asyncio.sleep(STATS_EVERY_S)


def check_tasks(tasks: dict[str, asyncio.Task[Any]], board: Board) -> None:
    """Report a background task that ended (the simulator or a reader) once."""
    for name, task in list(tasks.items()):
        if task.done():
            del tasks[name]
            error = None if task.cancelled() else task.exception()
            board.problems.append(f"{name} stopped" + (f": {error!r}" if error else ""))


# --- display loop ------------------------------------------------------------------------


async def display(console: Console, board: Board, stop: Callable[[], bool]) -> None:
    """Redraw ~2/s in a terminal; otherwise print the view every SNAPSHOT_EVERY_S."""
    if console.is_terminal:
        with Live(render(board), console=console, auto_refresh=False) as live:
            while not stop():
                live.update(render(board), refresh=True)
                await asyncio.sleep(REFRESH_S)
            live.update(render(board), refresh=True)
        return
    next_print = time.monotonic()
    while not stop():
        if time.monotonic() >= next_print:
            console.print(render(board))
            next_print += SNAPSHOT_EVERY_S
        await asyncio.sleep(REFRESH_S)
    console.print(render(board))


def stats_url(settings: Settings) -> Callable[[int], str]:
    host = settings.web_host if settings.web_host not in ("", "0.0.0.0", "::") else "127.0.0.1"  # noqa: S104
    return lambda port: f"http://{host}:{port}/api/v1/stats"


async def session(
    settings: Settings,
    url: str,
    port: int,
    worker: subprocess.Popen[bytes],
    board: Board,
    rate: float,
    duration_s: float | None,
    console: Console,
) -> None:
    """Simulator, readers and stats poller in the background; the view in the foreground."""
    tasks = {
        "simulator": asyncio.create_task(run_simulator(settings, url, board.units, rate)),
        "scores reader": asyncio.create_task(
            follow_topic(
                url, settings.topic("cemi.scores"), board.add_score, client_kwargs(settings)
            )
        ),
        "alerts reader": asyncio.create_task(
            follow_topic(
                url, settings.topic("cemi.alerts"), board.add_alert, client_kwargs(settings)
            )
        ),
        "standings reader": asyncio.create_task(
            follow_topic(
                url, settings.topic("cemi.standings"), board.add_standings, client_kwargs(settings)
            )
        ),
        "programmes reader": asyncio.create_task(
            follow_topic(
                url,
                settings.topic("cemi.programmes"),
                board.add_programme,
                client_kwargs(settings),
            )
        ),
        "stats poller": asyncio.create_task(poll_stats(stats_url(settings)(port), board)),
    }
    running = dict(tasks)
    deadline = None if duration_s is None else board.started + duration_s

    def stop() -> bool:
        check_tasks(running, board)
        if worker.poll() is not None:
            board.problems.append(f"the worker exited with code {worker.returncode}")
            return True
        return deadline is not None and time.monotonic() >= deadline

    try:
        await display(console, board, stop)
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)


async def run_simulator(settings: Settings, url: str, units: tuple[str, ...], rate: float) -> int:
    return await simulate(
        settings,
        url,
        units=units,
        rate=rate,
        count=None,
        seed=7,
        scenarios=(SCENARIO,),
        wire="avro",
        out=None,
        start_ms=None,
        duration_s=None,
    )


# --- worker process ----------------------------------------------------------------------


def worker_command() -> list[str]:
    cemi = Path(sys.executable).with_name("cemi")
    if cemi.exists():
        return [str(cemi), "worker"]
    return [sys.executable, "-c", "from streams.tools.cli import main; main()", "worker"]


def worker_env(settings: Settings, url: str, port: int, data_dir: Path) -> dict[str, str]:
    """The environment plus this process's settings, so both sides agree on topics etc."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        # secrets print as stars: the worker reads them from the inherited environment/files
        if value is not None and not isinstance(value, SecretStr):
            env[f"CEMI_{name.upper()}"] = str(value)
    env.update(
        CEMI_BROKER_URL=url,
        # the worker is given a URL, but the broker is still ours when none was configured
        CEMI_BROKER_WORKAROUNDS=str(settings.workarounds).lower(),
        CEMI_WEB_PORT=str(port),
        CEMI_DATA_DIR=str(data_dir),
        CEMI_STORE="memory",
    )
    return env


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate, wait, then kill; a second Ctrl-C while waiting kills at once."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(WORKER_STOP_S)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        process.kill()
        process.wait()


@contextlib.contextmanager
def worker_process(
    settings: Settings, url: str, workdir: Path, log_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own console script
            worker_command(),
            env=worker_env(settings, url, port, workdir / "data"),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only us; we stop the worker ourselves
        )
        try:
            yield process, port
        finally:
            stop_process(process)


# --- entry point -------------------------------------------------------------------------


def run_demo(
    settings: Settings,
    *,
    units: tuple[str, ...] = DEFAULT_UNITS[:6],
    rate: float = 300.0,
    duration_s: float | None = None,
) -> None:
    """Broker (embedded unless CEMI_BROKER_URL), worker subprocess, live simulator and a live
    view of the day's scores until Ctrl-C or `duration_s`."""
    console = make_console()
    workdir = Path(tempfile.mkdtemp(prefix="cemi-demo-"))
    log_path = workdir / "worker.log"
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # reconnect noise would tear the view
    board = Board(units=units)
    try:
        with broker_for(settings) as url:
            console.print(f"broker {url}; starting the worker (log {log_path})")
            asyncio.run(create_topics(settings, url))
            with worker_process(settings, url, workdir, log_path) as (worker, port):
                board.console_url = f"http://{settings.web_host}:{port}/"
                console.print(f"ops console: {board.console_url} (open it in a browser)")
                board.started = time.monotonic()
                asyncio.run(session(settings, url, port, worker, board, rate, duration_s, console))
    except KeyboardInterrupt:
        console.print("stopped")
    if any(p.startswith("the worker exited") for p in board.problems):
        console.print(log_tail(log_path), markup=False, highlight=False)
    console.print(f"worker log: {log_path}")


def make_console() -> Console:
    """A console; when the output is a file or pipe, wide enough for the table."""
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=NON_TTY_WIDTH)
    return console


def log_tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""
