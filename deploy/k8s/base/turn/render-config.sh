#!/bin/sh
# Init container of coturn: writes /run/coturn/turnserver.conf (an in-memory
# emptyDir) from the shared settings, this node's addresses and the secret.
#   HOST_IP           the node's address (downward API: status.hostIP)
#   TURN_EXTERNAL_IP  optional: the node's public address when the node sits
#                     behind 1:1 NAT (cloud VMs); else detected, else HOST_IP
#   TURN_SECRET       the shared secret (Secret parley-turn-secret)
set -eu
out=/run/coturn/turnserver.conf
cat /etc/coturn/template/turnserver.conf > "$out"
printf 'listening-ip=%s\nrelay-ip=%s\n' "$HOST_IP" "$HOST_IP" >> "$out"
public="${TURN_EXTERNAL_IP:-}"
if [ -z "$public" ] && command -v detect-external-ip >/dev/null 2>&1; then
  public="$(detect-external-ip 2>/dev/null | head -n 1 || true)"
fi
if [ -n "$public" ] && [ "$public" != "$HOST_IP" ]; then
  printf 'external-ip=%s/%s\n' "$public" "$HOST_IP" >> "$out"
fi
if [ -z "${TURN_SECRET:-}" ]; then
  echo "TURN_SECRET is empty: create Secret parley-turn-secret (key turn-secret)" >&2
  exit 1
fi
printf 'static-auth-secret=%s\n' "$TURN_SECRET" >> "$out"
echo "coturn: listening on $HOST_IP, public address ${public:-$HOST_IP}"
