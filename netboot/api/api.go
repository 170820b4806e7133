// Package api is the contract between shoal serve, the machines it boots
// and the lab: the typed states, roles and actions, a machine as the
// server knows it and the status it reports. One definition for the
// server, the appliance and the lab: none of them compares bare strings.
//
// Routes (docs/netboot.md):
//
//	GET  /api/v1/machines                    every machine
//	GET  /api/v1/machines/{mac}              one machine
//	POST /api/v1/machines/{mac}/credential   this boot's credential
//	POST /api/v1/machines/{mac}/status       a status report
//
// Client (client.go) makes these requests.
package api

// State is a machine's state as it reports it.
type State string

// The states, in the order a reimaging goes through them.
const (
	StateBooting   State = "booting"   // the appliance is up, network configured
	StateListening State = "listening" // listening for a peer already downloading the image
	StateWriting   State = "writing"   // data is reaching the disk
	StateServing   State = "serving"   // complete, multicasting for peers (a leader's linger)
	StateWritten   State = "written"   // every chunk verified on disk, the table written
	StateDone      State = "done"      // finished: the after-action follows
	StateFailed    State = "failed"    // stopped with an error, a shell on the console
)

// Over reports whether s ends a reimaging.
func (s State) Over() bool { return s == StateDone || s == StateFailed }

// Role is the part a machine plays in its peer session.
type Role string

// The roles.
const (
	RoleLeader    Role = "leader"    // downloads from the server and multicasts
	RoleFollower  Role = "follower"  // receives from a leader
	RoleServer    Role = "server"    // downloads from the server alone (no session)
	RoleListening Role = "listening" // not yet decided
)

// Action says what a machine's next network boot does.
type Action string

// The actions.
const (
	Reimage Action = "reimage" // boot the appliance and write the image
	Local   Action = "local"   // boot from the local disk (iPXE exits)
)
