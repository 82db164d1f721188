//! String enums of the wire protocol: actions, order kind and status, dispute
//! status and initiator, refusal reasons and buyer mode.

wire_enum! {
    /// What a message asks for or announces (`action`, kebab-case).
    ///
    /// There is no catch-all: an unknown action makes the whole message fail
    /// to parse, as in the reference.
    pub enum Action {
        /// Maker creates an order (client to node) or its acknowledgement.
        NewOrder = "new-order",
        /// Buyer takes a sell order.
        TakeSell = "take-sell",
        /// Seller takes a buy order.
        TakeBuy = "take-buy",
        /// Seller must pay the hold invoice in the payload.
        PayInvoice = "pay-invoice",
        /// Anti-abuse bond: pay the bond hold invoice in the payload.
        PayBondInvoice = "pay-bond-invoice",
        /// Anti-abuse bond: payout invoice request (node) or reply (client).
        AddBondInvoice = "add-bond-invoice",
        /// Anti-abuse bond: the payout invoice was accepted.
        BondInvoiceAccepted = "bond-invoice-accepted",
        /// Anti-abuse bond: the bond share was paid out.
        BondPayoutCompleted = "bond-payout-completed",
        /// Anti-abuse bond: the bond was slashed.
        BondSlashed = "bond-slashed",
        /// Buyer declares the fiat was sent.
        FiatSent = "fiat-sent",
        /// Node confirms fiat-sent to both parties.
        FiatSentOk = "fiat-sent-ok",
        /// Seller releases the sats.
        Release = "release",
        /// Node tells the buyer the seller released.
        Released = "released",
        /// Cancel or cooperative cancel request.
        Cancel = "cancel",
        /// The order (or the user's take) was canceled.
        Canceled = "canceled",
        /// Cooperative cancel started by the recipient.
        CooperativeCancelInitiatedByYou = "cooperative-cancel-initiated-by-you",
        /// Cooperative cancel started by the counterparty.
        CooperativeCancelInitiatedByPeer = "cooperative-cancel-initiated-by-peer",
        /// Dispute opened by the recipient.
        DisputeInitiatedByYou = "dispute-initiated-by-you",
        /// Dispute opened by the counterparty.
        DisputeInitiatedByPeer = "dispute-initiated-by-peer",
        /// Both parties agreed to cancel.
        CooperativeCancelAccepted = "cooperative-cancel-accepted",
        /// The buyer's invoice was accepted (defined, not emitted by mostrod).
        BuyerInvoiceAccepted = "buyer-invoice-accepted",
        /// The buyer's payout succeeded.
        PurchaseCompleted = "purchase-completed",
        /// Hold invoice accepted: the buyer may send the fiat.
        HoldInvoicePaymentAccepted = "hold-invoice-payment-accepted",
        /// Hold invoice settled after release.
        HoldInvoicePaymentSettled = "hold-invoice-payment-settled",
        /// Hold invoice canceled by the Lightning node.
        HoldInvoicePaymentCanceled = "hold-invoice-payment-canceled",
        /// Buyer informed that the seller must pay.
        WaitingSellerToPay = "waiting-seller-to-pay",
        /// Seller informed that the buyer's invoice is awaited.
        WaitingBuyerInvoice = "waiting-buyer-invoice",
        /// Payout invoice request (node) or supply (client).
        AddInvoice = "add-invoice",
        /// Seller informed that the trade is active.
        BuyerTookOrder = "buyer-took-order",
        /// Invitation to rate the counterparty.
        Rate = "rate",
        /// Rate the counterparty.
        RateUser = "rate-user",
        /// Rating acknowledgement.
        RateReceived = "rate-received",
        /// Refusal; the payload carries the reason.
        CantDo = "cant-do",
        /// Open a dispute.
        Dispute = "dispute",
        /// Admin or solver cancels the trade (seller refunded).
        AdminCancel = "admin-cancel",
        /// Admin cancel done.
        AdminCanceled = "admin-canceled",
        /// Admin or solver settles the trade (buyer paid).
        AdminSettle = "admin-settle",
        /// Admin settle done.
        AdminSettled = "admin-settled",
        /// Node operator adds a solver.
        AdminAddSolver = "admin-add-solver",
        /// Solver takes a dispute.
        AdminTakeDispute = "admin-take-dispute",
        /// A solver took the dispute.
        AdminTookDispute = "admin-took-dispute",
        /// The buyer's payout failed; retries follow.
        PaymentFailed = "payment-failed",
        /// The buyer's payout invoice was replaced.
        InvoiceUpdated = "invoice-updated",
        /// Direct message between users (ignored by the node).
        SendDm = "send-dm",
        /// Maker rotates the trade key of a pending order.
        TradePubkey = "trade-pubkey",
        /// Session restore request or reply.
        RestoreSession = "restore-session",
        /// Last trade index request or reply.
        LastTradeIndex = "last-trade-index",
        /// Own orders request or reply.
        Orders = "orders",
        /// Caller's own reputation request or reply.
        UserInfo = "user-info",
        /// Cashu escrow: the seller sends the lock proof.
        AddCashuEscrow = "add-cashu-escrow",
        /// Cashu escrow: the escrow is locked.
        CashuEscrowLocked = "cashu-escrow-locked",
        /// Cashu escrow: the node's signatures on the locked proofs.
        CashuPmSignature = "cashu-pm-signature",
        /// Payer history: the buyer declares the paying account hash.
        DeclarePayer = "declare-payer",
        /// Payer history: declaration acknowledged.
        PayerDeclared = "payer-declared",
        /// Payer history: query or report.
        PaymentHistory = "payment-history",
        /// Reputation portability: export request.
        ExportReputation = "export-reputation",
        /// Reputation portability: the signed attestation.
        ReputationExported = "reputation-exported",
        /// Reputation portability: import an attestation.
        ImportReputation = "import-reputation",
        /// Reputation portability: import done.
        ReputationImported = "reputation-imported",
    }
}

wire_enum! {
    /// Order side (`kind`): what the maker wants to do.
    pub enum Kind {
        /// The maker buys sats.
        Buy = "buy",
        /// The maker sells sats.
        Sell = "sell",
    }
}

wire_enum! {
    /// Order status as written in [`SmallOrder`](super::SmallOrder)
    /// (kebab-case).
    pub enum Status {
        /// Hold invoice accepted, buyer invoice known; fiat leg in progress.
        Active = "active",
        /// Canceled.
        Canceled = "canceled",
        /// Canceled by an admin or solver (seller refunded).
        CanceledByAdmin = "canceled-by-admin",
        /// Settled by an admin (defined, not produced by mostrod 0.20.2).
        SettledByAdmin = "settled-by-admin",
        /// Completed by an admin (defined, not produced by mostrod 0.20.2).
        CompletedByAdmin = "completed-by-admin",
        /// A dispute is open.
        Dispute = "dispute",
        /// A pending order passed its expiry.
        Expired = "expired",
        /// The buyer declared the fiat sent.
        FiatSent = "fiat-sent",
        /// Hold invoice settled, buyer payout pending or retrying.
        SettledHoldInvoice = "settled-hold-invoice",
        /// In the book, takeable.
        Pending = "pending",
        /// The buyer was paid.
        Success = "success",
        /// Waiting for the buyer's payout invoice.
        WaitingBuyerInvoice = "waiting-buyer-invoice",
        /// Waiting for the seller to pay the hold invoice.
        WaitingPayment = "waiting-payment",
        /// Both parties agreed to cancel.
        CooperativelyCanceled = "cooperatively-canceled",
        /// Published bucket for taken orders.
        InProgress = "in-progress",
        /// Anti-abuse bond: a taker is paying its bond.
        WaitingTakerBond = "waiting-taker-bond",
        /// Anti-abuse bond: the maker must pay its bond before publication.
        WaitingMakerBond = "waiting-maker-bond",
    }
}

wire_enum! {
    /// Dispute status (kebab-case).
    pub enum DisputeStatus {
        /// Opened, waiting for a solver.
        Initiated = "initiated",
        /// Taken by a solver.
        InProgress = "in-progress",
        /// Admin canceled: the seller was refunded.
        SellerRefunded = "seller-refunded",
        /// Admin settled: the buyer is paid.
        Settled = "settled",
        /// The seller released during the dispute.
        Released = "released",
        /// The parties cooperatively canceled during the dispute.
        CooperativelyCanceled = "cooperatively-canceled",
    }
}

wire_enum! {
    /// Which party opened a dispute (lowercase).
    pub enum DisputeInitiator {
        /// The buyer opened it.
        Buyer = "buyer",
        /// The seller opened it.
        Seller = "seller",
    }
}

wire_enum! {
    /// Why the node refuses a request (payload `cant_do`, snake_case).
    ///
    /// Any string this build does not know parses as [`CantDoReason::Unknown`],
    /// which is written back as `"unknown"`.
    pub enum CantDoReason {
        /// Missing or bad trade signature or identity proof.
        InvalidSignature = "invalid_signature",
        /// Trade index not above the last one.
        InvalidTradeIndex = "invalid_trade_index",
        /// Bad amount.
        InvalidAmount = "invalid_amount",
        /// The payout invoice failed validation.
        InvalidInvoice = "invalid_invoice",
        /// Bad payment request.
        InvalidPaymentRequest = "invalid_payment_request",
        /// Wrong party for the action.
        InvalidPeer = "invalid_peer",
        /// Bad rating.
        InvalidRating = "invalid_rating",
        /// Bad text message.
        InvalidTextMessage = "invalid_text_message",
        /// Wrong order kind for the action.
        InvalidOrderKind = "invalid_order_kind",
        /// Wrong order status for the action.
        InvalidOrderStatus = "invalid_order_status",
        /// Wrong sender key for the action.
        InvalidPubkey = "invalid_pubkey",
        /// Bad parameters.
        InvalidParameters = "invalid_parameters",
        /// Bad payload.
        InvalidPayload = "invalid_payload",
        /// The order is already canceled.
        OrderAlreadyCanceled = "order_already_canceled",
        /// The user could not be created.
        CantCreateUser = "cant_create_user",
        /// The sender does not own the order.
        IsNotYourOrder = "is_not_your_order",
        /// The action is not allowed in the current status.
        NotAllowedByStatus = "not_allowed_by_status",
        /// Fiat amount outside the range.
        OutOfRangeFiatAmount = "out_of_range_fiat_amount",
        /// Sats amount outside the limits.
        OutOfRangeSatsAmount = "out_of_range_sats_amount",
        /// No fresh exchange rate.
        PriceTooStale = "price_too_stale",
        /// The sender is not the dispute's solver.
        IsNotYourDispute = "is_not_your_dispute",
        /// The dispute was taken over by the admin.
        DisputeTakenByAdmin = "dispute_taken_by_admin",
        /// The sender is not authorized.
        NotAuthorized = "not_authorized",
        /// The dispute could not be created.
        DisputeCreationError = "dispute_creation_error",
        /// Not found.
        NotFound = "not_found",
        /// Wrong dispute status for the action.
        InvalidDisputeStatus = "invalid_dispute_status",
        /// The action is not valid here.
        InvalidAction = "invalid_action",
        /// The user already has an order waiting on them.
        PendingOrderExists = "pending_order_exists",
        /// Fiat currency not accepted.
        InvalidFiatCurrency = "invalid_fiat_currency",
        /// Too many requests.
        TooManyRequests = "too_many_requests",
        /// Bad Cashu token.
        InvalidCashuToken = "invalid_cashu_token",
        /// The Cashu mint is unavailable.
        CashuMintUnavailable = "cashu_mint_unavailable",
        /// Mint URL not accepted.
        InvalidMintUrl = "invalid_mint_url",
        /// The Cashu escrow is not locked.
        CashuEscrowNotLocked = "cashu_escrow_not_locked",
        /// A Cashu signature is missing.
        CashuSignatureMissing = "cashu_signature_missing",
        /// The node is in maintenance mode.
        MaintenanceMode = "maintenance_mode",
        /// Bad payer payment hash.
        InvalidPaymentHash = "invalid_payment_hash",
        /// The payer was not declared.
        PayerNotDeclared = "payer_not_declared",
        /// Reputation mode is required.
        ReputationIdentityRequired = "reputation_identity_required",
        /// Not eligible for a reputation export.
        NotEligibleForReputationExport = "not_eligible_for_reputation_export",
        /// The reputation is bound to another identity.
        ReputationBoundToOtherIdentity = "reputation_bound_to_other_identity",
        /// Bad reputation rebind authorisation.
        InvalidReputationRebind = "invalid_reputation_rebind",
        /// Bad reputation attestation.
        InvalidReputationAttestation = "invalid_reputation_attestation",
        /// The attestation issuer is not trusted.
        UntrustedReputationIssuer = "untrusted_reputation_issuer",
        /// The attestation expired.
        ExpiredReputationAttestation = "expired_reputation_attestation",
        /// The attestation is for another identity.
        ReputationIdentityMismatch = "reputation_identity_mismatch",
        /// The reputation was already imported.
        ReputationAlreadyImported = "reputation_already_imported",
        /// Catch-all for reasons this build does not know.
        Unknown = "unknown",
    }
    catch_all Unknown
}

wire_enum! {
    /// How a buyer trades, as reported in a payment history (snake_case).
    ///
    /// Any string this build does not know parses as [`BuyerMode::Unknown`].
    pub enum BuyerMode {
        /// Reputation mode (identity key differs from the trade key).
        Reputation = "reputation",
        /// Full-privacy mode.
        FullPrivacy = "full_privacy",
        /// Catch-all for modes this build does not know.
        Unknown = "unknown",
    }
    catch_all Unknown
}
