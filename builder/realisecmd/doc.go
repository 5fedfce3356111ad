// Package realisecmd is the CLI of the builder: `castor realise`, `castor
// log`, and the `nix-store --export` stream commands `castor store
// import-export` and `castor store export` that bring .drv files and
// sources across from Nix. cmd/castor opens the store from its flags and
// hands it over; the commands do the rest.
package realisecmd
