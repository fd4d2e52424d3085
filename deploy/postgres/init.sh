#!/bin/sh
# Runs once, when the PostgreSQL volume is first initialised (docker-entrypoint-initdb.d):
# databases for MLflow and Prefect beside prognos's own (POSTGRES_DB), and a read-only role for
# Grafana's business tables. prognos creates its tables later (prognos db upgrade, as
# POSTGRES_USER); the default privileges give the reader SELECT on them.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE DATABASE mlflow;
CREATE DATABASE prefect;
CREATE ROLE "$GRAFANA_DB_USER" LOGIN PASSWORD '$GRAFANA_DB_PASSWORD';
GRANT CONNECT ON DATABASE "$POSTGRES_DB" TO "$GRAFANA_DB_USER";
GRANT USAGE ON SCHEMA public TO "$GRAFANA_DB_USER";
ALTER DEFAULT PRIVILEGES FOR ROLE "$POSTGRES_USER" IN SCHEMA public
  GRANT SELECT ON TABLES TO "$GRAFANA_DB_USER";
SQL
