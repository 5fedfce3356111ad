#!/bin/sh
echo tree
