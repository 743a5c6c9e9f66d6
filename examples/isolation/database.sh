#!/usr/bin/env bash
# Provisioning hook, database per tenant: tenant <id> gets its own database tenant_<id> with the
# migrations of migrations/ applied. The backend connects to tenant_<id> for X-Tenant-Id <id>.
#
#   [provisioning]
#   on_create = ["examples/isolation/database.sh"]
#   on_delete = ["examples/isolation/database.sh"]
#
# create: CREATE DATABASE (if missing), migrations, CONNECT only for the application role.
# update: nothing to change in the database (plan and status live in the gateway).
# delete: terminate sessions, revoke CONNECT, rename to deleted_tenant_<id>_<unix time>; the
#         data stays (DROP_ON_DELETE=yes drops the database instead).
source "$(dirname "$0")/lib.sh"

db="$tenant_name"
case "$event" in
  create)
    ensure_app_role
    sql -v db="$db" <<'SQL'
SELECT format('CREATE DATABASE %I', :'db')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
    # Only the application role (and superusers) may connect; PUBLIC may not.
    sql -v db="$db" -v app="$APP_ROLE" <<'SQL'
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"app";
SQL
    sql -d "$db" <<'SQL'
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL
    apply_migrations "$db" public
    grant_app "$db" public
    echo "database $db ready"
    ;;
  update)
    echo "tenant $id: plan ${TENANT_PLAN:-?}, status ${TENANT_STATUS:-?}; database unchanged"
    ;;
  delete)
    # Revoke first, so the backend cannot reconnect while its sessions are ended.
    sql -v db="$db" -v app="$APP_ROLE" <<'SQL'
SELECT format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM %I', :'db', :'app')
WHERE EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SELECT count(pg_terminate_backend(pid, 5000)) AS sessions_ended
FROM pg_stat_activity WHERE datname = :'db';
SQL
    if [ "$DROP_ON_DELETE" = yes ]; then
      sql -v db="$db" <<'SQL'
SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', :'db') \gexec
SQL
      echo "database $db dropped"
    else
      sql -v db="$db" -v new="deleted_${db}_${stamp}" <<'SQL'
SELECT format('ALTER DATABASE %I RENAME TO %I', :'db', :'new')
WHERE EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
      echo "database $db kept as deleted_${db}_${stamp} (no one may connect)"
    fi
    ;;
esac
