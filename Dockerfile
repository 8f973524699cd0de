# One image for the api and the worker (docker-compose.yml chooses the command).
# Pinned to an exact release: a rebuild gets the same interpreter (bump it on purpose).
FROM python:3.11.13-slim-bookworm
WORKDIR /app
COPY pyproject.toml ./
COPY api ./api
COPY workflows ./workflows
COPY activities ./activities
COPY db ./db
COPY gateways ./gateways
COPY domain ./domain
COPY paysaga ./paysaga
COPY tickets ./tickets
COPY mail ./mail
COPY observability ./observability
COPY bench ./bench
COPY worker.py ./
RUN pip install --no-cache-dir . && useradd --system paysaga
USER paysaga
ENV PAYSAGA_TASK_QUEUE=paysaga PAYSAGA_TEMPORAL_NAMESPACE=default
CMD ["paysaga", "api", "--host", "0.0.0.0"]
