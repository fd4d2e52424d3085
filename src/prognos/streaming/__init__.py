"""Live ingestion over MQTT: messages decoded and validated (``messages``), the MQTT transport
(``transport``; an in-process queue in ``memory``), the ingester that runs them through the shared
ingestion core (``ingester``), the live-fleet publisher (``publisher``) and the one-process stream
``prognos demo`` runs (``run.run_stream``)."""
