#!/bin/sh
# Runs once, on the first start of an empty volume (docker-entrypoint-initdb.d):
# one database per service, both owned by the `parley` role (dev only; prod
# gives each service its own CloudNativePG cluster and role).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<SQL
CREATE DATABASE parley_moderation OWNER "$POSTGRES_USER";
CREATE DATABASE parley_ban OWNER "$POSTGRES_USER";
SQL
