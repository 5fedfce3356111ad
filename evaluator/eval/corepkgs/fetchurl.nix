# <nix/fetchurl.nix>: download a file with Nix's built-in fetcher (the
# builtin:fetchurl builder), verified by its hash. Written for castor.
{ url
, name ? baseNameOf (toString url)
, system ? "" # ignored: the fetch runs in Nix's built-in builder
, hash ? ""
, md5 ? ""
, sha1 ? ""
, sha256 ? ""
, sha512 ? ""
, outputHash ?
    if hash != "" then hash
    else if sha512 != "" then sha512
    else if sha1 != "" then sha1
    else if md5 != "" then md5
    else sha256
, outputHashAlgo ?
    if hash != "" then ""
    else if sha512 != "" then "sha512"
    else if sha1 != "" then "sha1"
    else if md5 != "" then "md5"
    else "sha256"
, executable ? false
, unpack ? false
, impure ? false
}:

derivation ({
  builder = "builtin:fetchurl";
  inherit name url executable unpack;
  system = "builtin";
  # A tarball to unpack or an executable is hashed recursively.
  outputHashMode = if unpack || executable then "recursive" else "flat";
  urls = [ url ];
  # No network isolation for the built-in fetcher; it checks the hash.
  preferLocalBuild = true;
  # The caller's proxy settings reach the fetcher (as in Nix 2.8).
  impureEnvVars = [ "http_proxy" "https_proxy" "ftp_proxy" "all_proxy" "no_proxy" ];
} // (if impure
  then { __impure = true; }
  else { inherit outputHashAlgo outputHash; }))
