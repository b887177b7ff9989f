"""Alembic environment of the moderation store: `services.runtime.db.migrate`
hands over the connection; the tables are described in store.py."""
from alembic import context

from services.moderation.store import metadata
from services.runtime.db import run_migrations_online

run_migrations_online(context, target_metadata=metadata)
