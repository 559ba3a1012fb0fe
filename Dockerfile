# syntax=docker/dockerfile:1
# One image for every DictaMesh Billing process; the first argument picks the role
# (deploy/docker-entrypoint.sh): api | webserver | daemon | relay | metrics | migrate |
# billing ARGS... | any command. Build: docker build -t dictamesh-billing .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the virtualenv, the package, and the dbt manifest ---------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv
WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.md LICENSE ./
RUN pip install --no-cache-dir -e .

COPY dagster_billing ./dagster_billing
COPY dbt_project.yml workspace.yaml ./
COPY dbt_project ./dbt_project
COPY dagster_home/dagster.yaml ./dagster_home/dagster.yaml
COPY deploy/docker-entrypoint.sh ./deploy/docker-entrypoint.sh
# Editable, so the package finds dbt_project/ and workspace.yaml beside it in /app.
RUN pip install --no-cache-dir --no-deps -e . \
    && python -m compileall -q dagster_billing

# The manifest is parsed once, here: no process parses dbt at start-up. The profile's
# env_var() defaults let dbt parse without a database.
RUN dbt parse --quiet --profiles-dir dbt_project --target-path target

# --- runtime ----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# WeasyPrint's libraries (invoice PDFs) and a font; versions come with the pinned base
# image's Debian release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 billing \
    && useradd --system --uid 10001 --gid billing --home-dir /app --shell /usr/sbin/nologin billing

COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
# Code stays root-owned; the app user writes only dbt's per-run target/ folders and the
# Dagster home (compute logs), and both can be volumes.
RUN chown -R billing:billing /app/target /app/dagster_home

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    APP_HOME=/app \
    DAGSTER_HOME=/app/dagster_home

WORKDIR /app
USER 10001:10001
EXPOSE 8000 3000 9109
ENTRYPOINT ["/app/deploy/docker-entrypoint.sh"]
CMD ["api"]
