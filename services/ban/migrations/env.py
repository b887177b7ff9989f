"""Alembic environment of the ban service. Migrations run at service start,
on the connection that `services.runtime.db.migrate` hands over, so there is
no alembic.ini. A new revision is a file in versions/ made from
script.py.mako, revision "NNNN", down_revision the previous one."""
from alembic import context

from services.ban.schema import metadata
from services.runtime.db import run_migrations_online

run_migrations_online(context, target_metadata=metadata)
