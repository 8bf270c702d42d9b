# A RabbitMQ image from Debian's rabbitmq-server (3.10.8) with the management plugin, the
# reference for scripts/docker_compare.sh where no registry serves rabbitmq:3-management.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends rabbitmq-server \
    && rm -rf /var/lib/apt/lists/* \
    && rabbitmq-plugins enable --offline rabbitmq_management rabbitmq_prometheus \
    && printf 'loopback_users.guest = false\nlog.console = true\n' > /etc/rabbitmq/rabbitmq.conf
USER rabbitmq
EXPOSE 5672 15672 15692
CMD ["rabbitmq-server"]
