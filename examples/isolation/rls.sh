#!/usr/bin/env bash
# Provisioning hook, shared tables with row-level security: every tenant's rows live in the same
# tables of the shared database PGDATABASE, keyed by tenant_id and filtered by the policy of
# rls.sql on current_setting('app.current_tenant'). The backend runs each request in a
# transaction that starts with SELECT set_tenant_context(<X-Tenant-Id>).
#
#   [provisioning]
#   on_create = ["examples/isolation/rls.sh"]
#   on_delete = ["examples/isolation/rls.sh"]
#
# create: tables, function and policy (idempotent), then the tenant's row in `tenants`.
# update: nothing to change in the database.
# delete: mark the tenant inactive (its rows stay, and nobody sees them); DROP_ON_DELETE=yes
#         deletes its rows instead.
source "$(dirname "$0")/lib.sh"

case "$event" in
  create)
    ensure_app_role
    sql -1 -v app="$APP_ROLE" -f "$here/rls.sql"
    sql -v tenant="$id" <<'SQL'
INSERT INTO tenants (tenant_id) VALUES (:'tenant')
ON CONFLICT (tenant_id) DO UPDATE SET active = true, deleted_at = NULL;
SQL
    echo "tenant $id registered for row-level security"
    ;;
  update)
    echo "tenant $id: plan ${TENANT_PLAN:-?}, status ${TENANT_STATUS:-?}; rows unchanged"
    ;;
  delete)
    if [ "$DROP_ON_DELETE" = yes ]; then
      # As the owner, bypassing nothing: the policy would hide the rows, so select them by key
      # in a transaction that names the tenant.
      sql -1 -v tenant="$id" <<'SQL'
SELECT set_tenant_context(:'tenant');
DELETE FROM notes WHERE tenant_id = :'tenant';
DELETE FROM tenants WHERE tenant_id = :'tenant';
SQL
      echo "tenant $id: rows deleted"
    else
      sql -v tenant="$id" <<'SQL'
UPDATE tenants SET active = false, deleted_at = now() WHERE tenant_id = :'tenant';
SQL
      echo "tenant $id deactivated; its rows are kept and hidden"
    fi
    ;;
esac
