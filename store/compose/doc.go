// Package compose builds a store's services from URLs: which blob,
// directory and path-info backends to use, where the embedded default
// keeps its data, and (later) how remote stores and binary caches are
// layered in front of or behind it.
//
// URLs understood:
//
//	memory://                      everything in process memory
//	objectstore+file:///DIR        chunked blobs under DIR (blob service);
//	                               ?layout=files for a file per chunk (Snix's
//	                               layout) instead of pack files,
//	                               ?compression=auto|fastest|default|none
//	bbolt:///FILE                  directories / path infos in a bbolt file
//	file:///DIR or a plain path    the embedded default store rooted at DIR
//	nix+https://HOST/…?trusted-public-keys=NAME:KEY
//	nix+http://…, nix+file:///DIR  a Nix binary cache as a substituter
//
// The default store lives in DataDir(): $CASTOR_HOME, else
// $XDG_DATA_HOME/castor, else /var/lib/castor for root and
// ~/.local/share/castor for others.
package compose
