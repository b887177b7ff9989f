#!/usr/bin/env bash
# Make sure a RabbitMQ broker answers at PARLEY_AMQP_URL (default
# 127.0.0.1:5672): start the installed broker if it is stopped, install it
# from Debian's packages if it is missing and we may, or say what to run.
# Then make sure a local broker has the rabbitmq_consistent_hash_exchange
# plugin (shipped with RabbitMQ): moderation shards chat lines by
# conversation through it (without it, moderation falls back to one shared
# queue and says so in its log).
set -euo pipefail

url="${PARLEY_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}"
hostport="${url#*://}"; hostport="${hostport#*@}"; hostport="${hostport%%/*}"
host="${hostport%%:*}"; port="${hostport##*:}"
[ "$port" = "$hostport" ] && port=5672

reachable() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }

local_broker() { case "$host" in 127.*|localhost|::1) return 0 ;; *) return 1 ;; esac; }

# Idempotent: `rabbitmq-plugins enable` (online, no restart) only when the
# plugin is not enabled yet; never fails the caller.
ensure_plugins() {
  local plugin=rabbitmq_consistent_hash_exchange plugins=rabbitmq-plugins
  local_broker || return 0
  if ! command -v "$plugins" >/dev/null 2>&1 && [ -x /usr/sbin/rabbitmq-plugins ]; then plugins=/usr/sbin/rabbitmq-plugins; fi
  if ! command -v "$plugins" >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
    echo "RabbitMQ: to shard moderation by conversation, enable $plugin: sudo rabbitmq-plugins enable $plugin" >&2
    return 0
  fi
  # the enabled-plugins file answers in a millisecond; `list` asks the node
  if grep -qs "$plugin" /etc/rabbitmq/enabled_plugins || "$plugins" list -e -m 2>/dev/null | grep -qx "$plugin"; then
    return 0
  fi
  if "$plugins" enable "$plugin" >/dev/null 2>&1; then
    echo "RabbitMQ: enabled $plugin"
  else
    echo "RabbitMQ: could not enable $plugin (moderation falls back to one shared queue)" >&2
  fi
}

if reachable; then
  echo "RabbitMQ: reachable at $host:$port"
  ensure_plugins
  exit 0
fi

case "$host" in
  127.*|localhost|::1) ;;
  *) echo "RabbitMQ: nothing answers at $host:$port (PARLEY_AMQP_URL); start that broker first" >&2; exit 1 ;;
esac

if ! command -v rabbitmq-server >/dev/null 2>&1 && [ -x /usr/sbin/rabbitmq-server ]; then
  export PATH="$PATH:/usr/sbin"
fi

if ! command -v rabbitmq-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "RabbitMQ: not installed; installing Debian's rabbitmq-server"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q rabbitmq-server
  else
    cat >&2 <<MSG
RabbitMQ is not installed and nothing answers at $host:$port. Install and start it:
    sudo apt-get update && sudo apt-get install -y rabbitmq-server
    sudo rabbitmq-server -detached
or point PARLEY_AMQP_URL at a running broker.
MSG
    exit 1
  fi
fi

echo "RabbitMQ: not running; starting it (rabbitmq-server -detached)"
rabbitmq-server -detached || true
for _ in $(seq 1 120); do
  if reachable; then
    # The port opens a little before the broker accepts logins.
    rabbitmqctl await_startup >/dev/null 2>&1 || true
    echo "RabbitMQ: started, reachable at $host:$port"
    ensure_plugins
    exit 0
  fi
  sleep 1
done
echo "RabbitMQ: started but not answering at $host:$port after 120 s; see /var/log/rabbitmq/" >&2
exit 1
