#!/usr/bin/env bash
# DynamoDB Local is a Java program: make sure a JRE (17+) is there.
set -euo pipefail
if command -v java >/dev/null 2>&1; then
  exit 0
fi
echo "==> java not found: installing a headless JRE from Debian"
if [ "$(id -u)" != "0" ]; then SUDO=sudo; else SUDO=; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq default-jre-headless >/dev/null
java -version
