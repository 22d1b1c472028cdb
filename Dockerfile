FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv/sage-mode

COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY . .
RUN useradd --create-home sage && chown -R sage /srv/sage-mode
USER sage

EXPOSE 8000
CMD ["python", "-m", "app", "--host", "0.0.0.0", "--port", "8000"]
