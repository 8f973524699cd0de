#!/bin/sh
# Least privilege for the compose stack (run once, by the postgres image, on a new data dir).
#   paysaga_owner  owns the paysaga database and runs the migrations (`paysaga migrate`);
#   paysaga_app    a group with row rights only, granted by migration 0006 (no table of its
#                  own, no DDL, read and insert only on audit_log);
#   paysaga_api    the login the API and the worker use, a member of paysaga_app;
#   temporal       Temporal's own login and databases (it creates them: CREATEDB).
# The superuser (POSTGRES_USER) is used by none of them.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v owner_password="$PAYSAGA_DB_OWNER_PASSWORD" \
  -v app_password="$PAYSAGA_DB_APP_PASSWORD" \
  -v temporal_password="$TEMPORAL_DB_PASSWORD" <<'SQL'
CREATE ROLE paysaga_owner LOGIN PASSWORD :'owner_password';
CREATE ROLE paysaga_app NOLOGIN;
CREATE ROLE paysaga_api LOGIN PASSWORD :'app_password' IN ROLE paysaga_app;
CREATE ROLE temporal LOGIN CREATEDB PASSWORD :'temporal_password';
CREATE DATABASE paysaga OWNER paysaga_owner;
REVOKE ALL ON DATABASE paysaga FROM PUBLIC;
GRANT CONNECT ON DATABASE paysaga TO paysaga_app;
\connect paysaga
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
ALTER SCHEMA public OWNER TO paysaga_owner;
SQL
