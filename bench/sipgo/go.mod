module github.com/hlas-voip/hlas/bench/sipgo

go 1.26.8

replace github.com/hlas-voip/hlas => ../..

require (
	github.com/emiago/sipgo v1.7.2
	github.com/hlas-voip/hlas v0.0.0-00010101000000-000000000000
)

require (
	github.com/gobwas/httphead v0.1.0 // indirect
	github.com/gobwas/pool v0.2.1 // indirect
	github.com/gobwas/ws v1.3.2 // indirect
	github.com/google/uuid v1.6.0 // indirect
	golang.org/x/sync v0.16.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
)
