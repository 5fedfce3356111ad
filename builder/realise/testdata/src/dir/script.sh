#!/bin/sh
echo from a source
