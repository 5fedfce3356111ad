// Package layered puts a local ("near") PathInfoService in front of remote
// ("far") ones, such as binary caches, in priority order: a lookup asks
// near first, then each far service in turn; what a far one finds is
// recorded near (with its signatures), so the next lookup never leaves
// the machine. Concurrent lookups of one path fetch it once, and misses
// are remembered for a short while.
package layered
