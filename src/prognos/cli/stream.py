"""``prognos stream publish | ingest``: a simulated fleet live over MQTT, and the ingester that
takes it through the shared ingestion core (acknowledged only once durable)."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from prognos.cli._common import HomeOption, get_state
from prognos.config import Settings
from prognos.errors import ConfigError

app = typer.Typer(help="Live ingestion over MQTT.", no_args_is_help=True)

BrokerOption = Annotated[
    str | None,
    typer.Option(
        "--broker",
        help="mqtt://\\[user:pass@]host[:port] (overrides PROGNOS_MQTT_URL).",
        show_default=False,
    ),
]
FleetOption = Annotated[
    str, typer.Option("--fleet", help="Fleet name: the topics' prognos/<fleet>/... part.")
]


def _broker(settings: Settings, broker: str | None) -> str:
    if broker is not None:
        return broker
    if settings.mqtt_url is not None:
        return settings.mqtt_url.get_secret_value()
    raise ConfigError(
        "say which broker: --broker mqtt://HOST:PORT (or kafka://HOST:PORT) or PROGNOS_MQTT_URL"
    )


@app.command()
def publish(
    ctx: typer.Context,
    fleet: FleetOption,
    broker: BrokerOption = None,
    assets: Annotated[int, typer.Option(min=1, help="Simulated assets.")] = 10,
    readings: Annotated[int, typer.Option(min=1, help="Readings per asset.")] = 100,
    rate: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            help="Messages per second \\[default: as fast as it goes].",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Draws the assets and the faults.")] = 0,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            "--fault",
            help="KIND:FIRST-LAST:FROM[:SIZE][:SENSOR]; kinds offset, stuck, noise, regime "
            "(sensor faults) and duplicate, reorder, drop (SIZE a probability). Repeatable.",
            show_default=False,
        ),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            help="Publish this data source (KIND:PATH) instead of simulating.", show_default=False
        ),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Drive a fleet as live: one JSON reading per message on prognos/<fleet>/<asset>/readings
    (the body POST /readings accepts), QoS 1, cycle by cycle across the assets."""
    from prognos.data.faults import parse_fault
    from prognos.data.sources import load_source
    from prognos.streaming.publisher import (
        TransportFaults,
        outgoing,
        simulated_fleet,
    )
    from prognos.streaming.publisher import publish as publish_all
    from prognos.streaming.transport import MqttSender, Sender

    state = get_state(ctx, home)
    url = _broker(state.settings, broker)
    faults = [parse_fault(text) for text in fault or []]
    data = load_source(source) if source else simulated_fleet(assets, readings, seed)
    sender: Sender
    if url.startswith("kafka"):  # kafka://host:9092: the Kafka connector, same guarantees
        from prognos.streaming.kafka import KafkaSender

        sender = KafkaSender(url)
    else:
        sender = MqttSender(url)
    total = len(data.readings)
    try:
        with Progress(
            TextColumn("publishing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=state.err,
            transient=True,
            disable=not state.err.is_terminal,
        ) as progress:
            task = progress.add_task("publish", total=total)
            report = publish_all(
                sender,
                outgoing(data, fleet, faults, seed=seed),
                rate=rate,
                faults=TransportFaults(faults, seed),
                progress=lambda n: progress.update(task, completed=n),
            )
    finally:
        sender.close()
    state.out.print(
        f"published {report.published} messages ({report.readings} readings of "
        f"{data.readings['asset_id'].nunique()} assets) to prognos/{fleet}/+/readings in "
        f"{report.seconds:.1f} s ({report.rate:,.0f}/s); dropped {report.dropped}, duplicated "
        f"{report.duplicated}, reordered {report.reordered}",
        soft_wrap=True,
    )
    if not report.acknowledged:
        state.err.print("[red]the broker did not acknowledge every message in time[/]")
        raise typer.Exit(1)


@app.command()
def ingest(
    ctx: typer.Context,
    fleet: FleetOption,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Registered model that scores the stream (its champion)."),
    ] = None,
    broker: BrokerOption = None,
    group: Annotated[
        str | None,
        typer.Option(
            help="Shared-subscription group: its ingesters split the messages.", show_default=False
        ),
    ] = None,
    client_id: Annotated[
        str | None,
        typer.Option(
            help="MQTT client id: names the persistent session resumed on restart \\[default: "
            "prognos-ingest-<fleet>, plus -<group>-<host> with --group; two members of a group "
            "on one host need their own].",
            show_default=False,
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve Prometheus /metrics here (PROGNOS_STREAM_METRICS_PORT).", show_default=False
        ),
    ] = None,
    lake_every: Annotated[
        float | None,
        typer.Option(
            "--lake-every",
            help="Also export the fleet's stored readings to the lake (PROGNOS_LAKE_URL) every "
            "SECONDS, on a thread beside the ingester.",
            show_default=False,
        ),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Take the fleet's readings from the broker until SIGTERM/SIGINT: validate, store
    (idempotent on fleet, asset, time), update the online state, score each asset on its newest
    reading, and acknowledge each message only once durable. Bad messages go to dead_letters."""
    from prognos.streaming.ingester import StreamIngester
    from prognos.streaming.messages import subscription
    from prognos.streaming.transport import MqttSubscription, Subscription

    state = get_state(ctx, home)
    settings = state.settings
    name = model or settings.model_name
    if name is None:
        raise ConfigError("say which model scores the stream: --model NAME or PROGNOS_MODEL_NAME")
    update: dict[str, object] = {"fleet": fleet, "model_name": name}
    if metrics_port is not None:
        update["stream_metrics_port"] = metrics_port
    settings = settings.model_copy(update=update)
    url = _broker(settings, broker)
    if client_id is None:
        client_id = f"prognos-ingest-{fleet}"
        if group:
            client_id += f"-{group}-{socket.gethostname()}"
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    sub: Subscription
    if url.startswith("kafka"):  # a consumer group; offsets committed only once durable
        from prognos.streaming.kafka import KafkaSubscription

        sub = KafkaSubscription(url, fleet, group=group or f"prognos-{fleet}", client_id=client_id)
    else:
        sub = MqttSubscription(
            url,
            subscription(fleet, group),
            client_id=client_id,
            session_expiry=settings.mqtt_session_expiry_seconds,
            receive_maximum=settings.mqtt_receive_maximum,
        )
    ingester = StreamIngester(settings, sub)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await ingester.run(stop)

    state.err.print(f"ingesting prognos/{fleet}/+/readings as {client_id} (model {name}); "
                    "stop with Ctrl-C or SIGTERM", soft_wrap=True)  # fmt: skip
    exporter = None
    if lake_every is not None:
        from prognos.flows.lake import export_every

        done = threading.Event()
        exporter = threading.Thread(
            target=export_every,
            args=(settings, lake_every),
            kwargs={"fleets": [fleet], "stop": done, "actor": "stream"},
            name="lake-export",
            daemon=True,
        )
        exporter.start()
    try:
        asyncio.run(main())
    finally:
        if exporter is not None:
            done.set()  # the export in progress finishes: its watermark stays exact
            exporter.join()
    m = ingester.metrics
    state.out.print(
        f"stopped: {m.value('prognos_stream_messages_acked_total'):.0f} messages acknowledged, "
        f"{m.value('prognos_stream_readings_stored_total'):.0f} readings stored, "
        f"{m.value('prognos_stream_duplicates_total'):.0f} duplicates, "
        f"{m.value('prognos_stream_predictions_total'):.0f} predictions",
        soft_wrap=True,
    )
