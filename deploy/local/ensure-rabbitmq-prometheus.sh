#!/usr/bin/env bash
# Make sure the local RabbitMQ serves its own Prometheus metrics (the
# rabbitmq_prometheus plugin, part of Debian's rabbitmq-server) on
# 127.0.0.1:15692, loopback only. The deploy tests scrape it to check that every
# rabbitmq_* series the alerts and the dashboard name is really exported
# (tests/deploy/test_metrics_exported.py; without it they skip those names and
# say so). Clusters get the plugin from the RabbitMQ cluster operator.
#
# When the port does not answer and we are root: bind the plugin's listener to
# 127.0.0.1 (at once, and for later broker starts through
# /etc/rabbitmq/advanced.config when that file does not exist yet), then
# `rabbitmq-plugins enable rabbitmq_prometheus` (online: no broker restart).
set -euo pipefail

port=15692
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

if answers; then
  echo "RabbitMQ metrics: served at 127.0.0.1:$port"
  exit 0
fi

if ! command -v rabbitmq-plugins >/dev/null 2>&1 && [ -x /usr/sbin/rabbitmq-plugins ]; then
  export PATH="$PATH:/usr/sbin"
fi

if [ "$(id -u)" != 0 ] || ! command -v rabbitmq-plugins >/dev/null 2>&1; then
  cat >&2 <<MSG
RabbitMQ metrics: nothing answers at 127.0.0.1:$port. The deploy tests then skip
the rabbitmq_* names of the alerts and the dashboard. To serve them (loopback only):
    sudo rabbitmqctl eval 'application:set_env(rabbitmq_prometheus, tcp_config, [{port, $port}, {ip, "127.0.0.1"}]).'
    sudo rabbitmq-plugins enable rabbitmq_prometheus
MSG
  exit 0
fi

advanced=/etc/rabbitmq/advanced.config
if [ ! -e "$advanced" ]; then
  mkdir -p /etc/rabbitmq
  cat > "$advanced" <<CONF
%% Written by Parley's deploy/local/ensure-rabbitmq-prometheus.sh: the
%% rabbitmq_prometheus plugin listens on loopback only.
[{rabbitmq_prometheus, [{tcp_config, [{port, $port}, {ip, "127.0.0.1"}]}]}].
CONF
elif ! grep -q rabbitmq_prometheus "$advanced"; then
  echo "RabbitMQ metrics: $advanced exists; add the loopback listener there yourself:" >&2
  echo "  {rabbitmq_prometheus, [{tcp_config, [{port, $port}, {ip, \"127.0.0.1\"}]}]}" >&2
fi

echo "RabbitMQ metrics: enabling rabbitmq_prometheus on 127.0.0.1:$port"
rabbitmqctl eval "application:set_env(rabbitmq_prometheus, tcp_config, [{port, $port}, {ip, \"127.0.0.1\"}])." >/dev/null
rabbitmq-plugins enable rabbitmq_prometheus >/dev/null
for _ in $(seq 1 30); do
  if answers; then
    echo "RabbitMQ metrics: served at 127.0.0.1:$port"
    exit 0
  fi
  sleep 1
done
echo "RabbitMQ metrics: plugin enabled but 127.0.0.1:$port does not answer; the deploy tests will skip rabbitmq_* names" >&2
exit 0
