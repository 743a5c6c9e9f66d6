#!/usr/bin/env bash
# Provisioning hook, schema per tenant: tenant <id> gets the schema TENANT_SCHEMA (the tenant's
# `schema`, sent upstream as X-Tenant-Schema; default tenant_<id>) in the shared database
# PGDATABASE, with the migrations of migrations/ applied inside it. The backend sets
# search_path from X-Tenant-Schema.
#
#   [provisioning]
#   on_create = ["examples/isolation/schema.sh"]
#   on_delete = ["examples/isolation/schema.sh"]
#
# create: CREATE SCHEMA (if missing), migrations, USAGE for the application role.
# update: nothing to change in the database.
# delete: revoke the application role's access and rename the schema to
#         deleted_<schema>_<unix time>; the data stays (DROP_ON_DELETE=yes drops it).
source "$(dirname "$0")/lib.sh"

schema="${TENANT_SCHEMA:-$tenant_name}"
# Same rule as the reference backend applies to X-Tenant-Schema.
[[ "$schema" =~ ^[a-z_][a-z0-9_]{0,39}$ ]] || die "invalid schema name '${schema}'"
db="${PGDATABASE:-postgres}"

case "$event" in
  create)
    ensure_app_role
    sql -v schema="$schema" -v app="$APP_ROLE" <<'SQL'
CREATE SCHEMA IF NOT EXISTS :"schema";
REVOKE ALL ON SCHEMA :"schema" FROM PUBLIC;
SQL
    apply_migrations "$db" "$schema"
    grant_app "$db" "$schema"
    echo "schema $db/$schema ready"
    ;;
  update)
    echo "tenant $id: plan ${TENANT_PLAN:-?}, status ${TENANT_STATUS:-?}; schema unchanged"
    ;;
  delete)
    if [ "$DROP_ON_DELETE" = yes ]; then
      sql -v schema="$schema" <<'SQL'
DROP SCHEMA IF EXISTS :"schema" CASCADE;
SQL
      echo "schema $schema dropped"
    else
      sql -v schema="$schema" -v app="$APP_ROLE" -v new="deleted_${schema}_${stamp}" <<'SQL'
SELECT format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM %I', :'schema', :'app'),
       format('REVOKE ALL ON SCHEMA %I FROM %I', :'schema', :'app'),
       format('ALTER SCHEMA %I RENAME TO %I', :'schema', :'new')
WHERE EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = :'schema') \gexec
SQL
      echo "schema $schema kept as deleted_${schema}_${stamp} (the application role has no access)"
    fi
    ;;
esac
