#!/bin/sh
# Assembles the image's whole filesystem under /rootfs from a Debian stage that holds
# /usr/local/bin/warren: the binary with RabbitMQ's tool names linked to it, the shared
# libraries it and /bin/sh need (nothing else: no package manager, no Erlang), a
# `rabbitmq` user (uid/gid 999, as in the official image) owning the data and config
# directories, and the default configuration under /etc/rabbitmq.
set -eu
R=/rootfs
mkdir -p "$R/usr/local/bin" "$R/bin" "$R/etc/rabbitmq/conf.d" "$R/var/lib/rabbitmq" \
    "$R/var/log/rabbitmq" "$R/tmp"
cp /usr/local/bin/warren "$R/usr/local/bin/warren"
for tool in rabbitmq-server rabbitmqctl rabbitmq-diagnostics rabbitmq-plugins rabbitmqadmin; do
    ln -s warren "$R/usr/local/bin/$tool"
done
# A POSIX shell for `CMD-SHELL` healthchecks and `docker exec ... sh -c`.
cp /bin/dash "$R/bin/sh"
for lib in $( (ldd /usr/local/bin/warren; ldd /bin/dash) | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u); do
    mkdir -p "$R$(dirname "$lib")"
    cp -L "$lib" "$R$lib"
done
cp -r /docker-etc/rabbitmq/. "$R/etc/rabbitmq/"
cat >"$R/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
rabbitmq:x:999:999:RabbitMQ:/var/lib/rabbitmq:/bin/sh
PASSWD
cat >"$R/etc/group" <<'GROUP'
root:x:0:
rabbitmq:x:999:
GROUP
chown -R 999:999 "$R/var/lib/rabbitmq" "$R/var/log/rabbitmq" "$R/etc/rabbitmq"
chmod 1777 "$R/tmp"
