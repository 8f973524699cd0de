# One image for the api and the worker (docker-compose.yml chooses the command).
# Pinned to an exact release: a rebuild gets the same interpreter (bump it on purpose).
FROM python:3.11.13-slim-bookworm
WORKDIR /app
# The dependencies first, from the lock, each file checked against its hash; a code change then
# rebuilds only the layers below.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
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
RUN pip install --no-cache-dir --no-deps --no-build-isolation . && useradd --system paysaga
# The ticket font's static cut (tickets.fonts), made once here rather than at the first ticket.
RUN python -c "from tickets.fonts import ticket_font; ticket_font()" && chmod a+r /tmp/paysaga-noto-sans-*
USER paysaga
ENV PAYSAGA_TASK_QUEUE=paysaga PAYSAGA_TEMPORAL_NAMESPACE=default
CMD ["paysaga", "api", "--host", "0.0.0.0"]
