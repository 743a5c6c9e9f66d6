# Shared by database.sh, schema.sh and rls.sh: tenant id checks, the application role, and
# migrations. Sourced, not run. Everything talks to PostgreSQL through psql and the libpq PG*
# variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE) of the gateway's environment; the
# hooks need a role that may create databases, schemas and roles (the PGUSER of the gateway).
#
# Every identifier reaches SQL through psql variables (:"name" quotes an identifier, :'name'
# a literal), never by pasting text into a statement.

set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The migrations every tenant gets (database and schema models), applied in name order.
MIGRATIONS_DIR="${MIGRATIONS_DIR:-$here/migrations}"
# The role the backend logs in as: never a superuser and never the owner of tenant tables,
# since both bypass row-level security.
APP_ROLE="${APP_ROLE:-tenant_app}"
# Opt in to destroying data on delete; by default a deleted tenant's data is kept, revoked
# and renamed.
DROP_ON_DELETE="${DROP_ON_DELETE:-no}"

event="${1:-${TENANT_EVENT:-}}"
id="${TENANT_ID:-}"

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

command -v psql >/dev/null || die "psql not found (Debian: apt-get install postgresql-client)"
case "$event" in create|update|delete) ;; *) die "unknown event '${event}' (create|update|delete)";; esac
# Gateway tenant ids are DNS labels; 32 characters keep tenant_<id> and
# deleted_tenant_<id>_<unix time> under PostgreSQL's 63-byte identifier limit.
[[ "$id" =~ ^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$ ]] || die "invalid tenant id '${id}'"

# tenant_<id>, the default database or schema name of a tenant.
tenant_name="tenant_${id}"
stamp="$(date +%s)"

# psql that stops at the first error and prints nothing but errors.
sql() { PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 "$@"; }

# The application role (no login password is set here: use your own secret management).
ensure_app_role() {
  sql -v app="$APP_ROLE" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS', :'app')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app') \gexec
SQL
}

# apply_migrations <database> <schema>: every *.sql of MIGRATIONS_DIR not applied yet, each in
# its own transaction with search_path = <schema>, recorded in <schema>.schema_migrations.
apply_migrations() {
  local db="$1" schema="$2" f version
  sql -d "$db" -v schema="$schema" <<'SQL'
CREATE TABLE IF NOT EXISTS :"schema".schema_migrations (
  version    text PRIMARY KEY,
  applied_at timestamptz NOT NULL DEFAULT now()
);
SQL
  for f in "$MIGRATIONS_DIR"/*.sql; do
    [ -e "$f" ] || continue
    version="$(basename "$f" .sql)"
    if [ "$(sql -d "$db" -tA -v schema="$schema" -v version="$version" <<'SQL'
SELECT count(*) FROM :"schema".schema_migrations WHERE version = :'version';
SQL
)" = 1 ]; then
      continue
    fi
    echo "applying $version to $db/$schema"
    { echo 'SET search_path TO :"schema";'
      cat "$f"
      echo "INSERT INTO schema_migrations (version) VALUES (:'version');"
    } | sql -1 -d "$db" -v schema="$schema" -v version="$version"
  done
}

# grant_app <database> <schema>: the application role may use the tables of <schema>.
grant_app() {
  sql -d "$1" -v schema="$2" -v app="$APP_ROLE" <<'SQL'
GRANT USAGE ON SCHEMA :"schema" TO :"app";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA :"schema" TO :"app";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA :"schema" TO :"app";
REVOKE INSERT, UPDATE, DELETE ON :"schema".schema_migrations FROM :"app";
SQL
}
