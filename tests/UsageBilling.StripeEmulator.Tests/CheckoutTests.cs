using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using Stripe;
using Stripe.Checkout;
using UsageBilling.StripeEmulator.Admin;

namespace UsageBilling.StripeEmulator.Tests;

/// <summary>Checkout Sessions in subscription mode, driven through Stripe.net's <c>client.V1.Checkout.Sessions</c>.</summary>
public sealed partial class CheckoutTests
{
    private const string SuccessUrl = "http://127.0.0.1:9/usage?checkout=success&session_id={CHECKOUT_SESSION_ID}";
    private const string CancelUrl = "http://127.0.0.1:9/plans?checkout=cancel";

    private static SessionCreateOptions Options(string? customer, Plan plan) => new()
    {
        Mode = "subscription",
        Customer = customer,
        LineItems = [new SessionLineItemOptions { Price = plan.Flat.Id, Quantity = 1 }, new SessionLineItemOptions { Price = plan.Metered.Id }],
        SuccessUrl = SuccessUrl,
        CancelUrl = CancelUrl,
        ClientReferenceId = "user-42",
        Metadata = new Dictionary<string, string> { ["cart"] = "c1" },
        SubscriptionData = new SessionSubscriptionDataOptions { Metadata = new Dictionary<string, string> { ["ub_plan"] = "pro" } },
    };

    private static string TypeOf(WebhookReceiver.Received r) => JsonDocument.Parse(r.Body).RootElement.GetProperty("type").GetString()!;

    private static string ObjectIdOf(WebhookReceiver.Received r) =>
        JsonDocument.Parse(r.Body).RootElement.GetProperty("data").GetProperty("object").GetProperty("id").GetString()!;

    [Fact]
    public async Task Create_Retrieve_ListByCustomer_AndLineItems()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var plan = await Plans.HybridAsync(c);
        var ada = await Emu.CustomerAsync(c);
        var bob = await Emu.CustomerAsync(c, "bob@example.com");

        var session = await c.V1.Checkout.Sessions.CreateAsync(Options(ada.Id, plan), cancellationToken: Emu.Ct);
        var other = await c.V1.Checkout.Sessions.CreateAsync(Options(bob.Id, plan), cancellationToken: Emu.Ct);
        var got = await c.V1.Checkout.Sessions.GetAsync(session.Id, cancellationToken: Emu.Ct);
        var adas = await c.V1.Checkout.Sessions.ListAsync(new SessionListOptions { Customer = ada.Id }, cancellationToken: Emu.Ct);
        var all = await c.V1.Checkout.Sessions.ListAsync(new SessionListOptions(), cancellationToken: Emu.Ct);
        var lines = await c.V1.Checkout.Sessions.LineItems.ListAsync(session.Id, cancellationToken: Emu.Ct);

        Assert.Matches("^cs_test_[0-9A-Za-z]{58}$", session.Id);
        Assert.Equal(("checkout.session", "open", "unpaid", "subscription"), (session.Object, session.Status, session.PaymentStatus, session.Mode));
        Assert.Equal(ada.Id, session.CustomerId);
        Assert.Null(session.SubscriptionId);
        Assert.Equal($"{server.ApiBase}/_emulator/checkout/{session.Id}", session.Url);
        Assert.Equal((SuccessUrl, CancelUrl, "user-42"), (session.SuccessUrl, session.CancelUrl, session.ClientReferenceId));
        Assert.Equal("c1", session.Metadata["cart"]);
        Assert.Equal(Emu.T0.UtcDateTime, session.Created);
        Assert.Equal(Emu.T0.AddHours(24).UtcDateTime, session.ExpiresAt);
        Assert.Equal((2900L, 2900L, "usd"), (session.AmountSubtotal, session.AmountTotal, session.Currency));
        Assert.Equal(JsonDocument.Parse(session.StripeResponse.Content).RootElement.ToString(), JsonDocument.Parse(got.StripeResponse.Content).RootElement.ToString());
        Assert.Equal(session.Id, Assert.Single(adas.Data).Id);
        Assert.Equal([other.Id, session.Id], all.Data.Select(s => s.Id));
        Assert.Equal([(plan.Flat.Id, (long?)1, 2900L), (plan.Metered.Id, null, 0L)], lines.Data.Select(l => (l.Price.Id, (long?)l.Quantity, l.AmountTotal)));
        Assert.Equal("Pro", lines.Data[0].Description);

        // Creating a session changes nothing else: no subscription, no events yet.
        Assert.Empty((await c.V1.Subscriptions.ListAsync(new SubscriptionListOptions { Customer = ada.Id }, cancellationToken: Emu.Ct)).Data);
        Assert.Empty((await c.V1.Events.ListAsync(cancellationToken: Emu.Ct)).Data);
    }

    [Fact]
    public async Task Create_InvalidRequests_AreStripeShaped400s_AndCreateNothing()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var plan = await Plans.HybridAsync(c);
        var cus = await Emu.CustomerAsync(c);

        async Task<StripeError> FailAsync(Action<SessionCreateOptions> change)
        {
            var options = Options(cus.Id, plan);
            change(options);
            var ex = await Assert.ThrowsAsync<StripeException>(() => c.V1.Checkout.Sessions.CreateAsync(options, cancellationToken: Emu.Ct));
            Assert.Equal(HttpStatusCode.BadRequest, ex.HttpStatusCode);
            Assert.Equal("invalid_request_error", ex.StripeError.Type);
            return ex.StripeError;
        }

        var noSuccess = await FailAsync(o => o.SuccessUrl = null);
        var badSuccess = await FailAsync(o => o.SuccessUrl = "not a url");
        var noMode = await FailAsync(o => o.Mode = null);
        var badMode = await FailAsync(o => o.Mode = "sometimes");
        var payment = await FailAsync(o => o.Mode = "payment");
        var noItems = await FailAsync(o => o.LineItems = null);
        var unknownPrice = await FailAsync(o => o.LineItems[0].Price = "price_missing");
        var meteredQuantity = await FailAsync(o => o.LineItems[1].Quantity = 1);
        var licensedNoQuantity = await FailAsync(o => o.LineItems[0].Quantity = null);
        var zeroQuantity = await FailAsync(o => o.LineItems[0].Quantity = 0);
        var unknownCustomer = await FailAsync(o => o.Customer = "cus_missing");
        var tooSoon = await FailAsync(o => o.ExpiresAt = Emu.T0.AddMinutes(10).UtcDateTime);
        var tooLate = await FailAsync(o => o.ExpiresAt = Emu.T0.AddHours(25).UtcDateTime);
        var trial = await FailAsync(o => o.SubscriptionData.TrialPeriodDays = 7);

        Assert.Equal(("parameter_missing", "success_url"), (noSuccess.Code, noSuccess.Param));
        Assert.Equal(("url_invalid", "success_url"), (badSuccess.Code, badSuccess.Param));
        Assert.Equal(("parameter_missing", "mode"), (noMode.Code, noMode.Param));
        Assert.Equal("mode", badMode.Param);
        Assert.Equal("mode", payment.Param);
        Assert.Equal(("parameter_missing", "line_items"), (noItems.Code, noItems.Param));
        Assert.Equal(("resource_missing", "line_items[0][price]"), (unknownPrice.Code, unknownPrice.Param));
        Assert.Equal("No such price: 'price_missing'", unknownPrice.Message);
        Assert.Equal("line_items[1][quantity]", meteredQuantity.Param);
        Assert.Contains("metered", meteredQuantity.Message, StringComparison.Ordinal);
        Assert.Equal(("parameter_missing", "line_items[0][quantity]"), (licensedNoQuantity.Code, licensedNoQuantity.Param));
        Assert.Equal("line_items[0][quantity]", zeroQuantity.Param);
        Assert.Equal(("resource_missing", "customer"), (unknownCustomer.Code, unknownCustomer.Param));
        Assert.Equal(("expires_at", "expires_at"), (tooSoon.Param, tooLate.Param));
        Assert.Equal(("parameter_unknown", "subscription_data[trial_period_days]"), (trial.Code, trial.Param));

        using var http = Emu.Raw(server);
        using var unknown = await http.PostAsync("/v1/checkout/sessions", Emu.Form(("mode", "subscription"), ("success_url", "http://127.0.0.1:9/"),
            ("line_items[0][price]", plan.Flat.Id), ("line_items[0][quantity]", "1"), ("shipping_rate", "shr_1")), Emu.Ct);
        Assert.Equal(HttpStatusCode.BadRequest, unknown.StatusCode);
        Assert.Equal("parameter_unknown", JsonDocument.Parse(await unknown.Content.ReadAsStringAsync(Emu.Ct)).RootElement.GetProperty("error").GetProperty("code").GetString());

        var missing = await Assert.ThrowsAsync<StripeException>(() => c.V1.Checkout.Sessions.GetAsync("cs_test_missing", cancellationToken: Emu.Ct));
        Assert.Equal((HttpStatusCode.NotFound, "resource_missing"), (missing.HttpStatusCode, missing.StripeError.Code));
        Assert.Empty((await c.V1.Checkout.Sessions.ListAsync(cancellationToken: Emu.Ct)).Data);
    }

    [Fact]
    public async Task Create_IdempotencyKey_ReplaysTheSameSession_AndRejectsOtherParameters()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var plan = await Plans.HybridAsync(c);
        var cus = await Emu.CustomerAsync(c);
        var ro = new RequestOptions { IdempotencyKey = "ub-checkout:user-42:req-1" };

        var first = await c.V1.Checkout.Sessions.CreateAsync(Options(cus.Id, plan), ro, Emu.Ct);
        var second = await c.V1.Checkout.Sessions.CreateAsync(Options(cus.Id, plan), ro, Emu.Ct);
        var changed = Options(cus.Id, plan);
        changed.ClientReferenceId = "someone-else";
        var mismatch = await Assert.ThrowsAsync<StripeException>(() => c.V1.Checkout.Sessions.CreateAsync(changed, ro, Emu.Ct));

        Assert.Equal(first.Id, second.Id);
        Assert.Equal("true", second.StripeResponse.Headers.GetValues("Idempotent-Replayed").Single());
        Assert.Equal((HttpStatusCode.BadRequest, "idempotency_error"), (mismatch.HttpStatusCode, mismatch.StripeError.Type));
        Assert.Equal(first.Id, Assert.Single((await c.V1.Checkout.Sessions.ListAsync(cancellationToken: Emu.Ct)).Data).Id);
    }

    [Fact]
    public async Task PayOnHostedPage_CreatesTheSubscription_EmitsSignedEvents_AndRedirectsToSuccessUrl()
    {
        var (server, _) = await Emu.StartAsync(o => o.WebhookSignatureClock = WebhookSignatureClock.System);
        await using var _s = server;
        await using var receiver = await WebhookReceiver.StartAsync();
        var c = Emu.Client(server);
        var endpoint = await server.Admin.AddWebhookEndpointAsync(receiver.Url, ["customer.subscription.created", "checkout.session.completed"], Emu.Ct);
        var plan = await Plans.HybridAsync(c);
        var cus = await Emu.CustomerAsync(c);
        var session = await c.V1.Checkout.Sessions.CreateAsync(Options(cus.Id, plan), cancellationToken: Emu.Ct);
        using var browser = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false });

        using var page = await browser.GetAsync(session.Url, Emu.Ct);
        var html = await page.Content.ReadAsStringAsync(Emu.Ct);
        var action = FormAction().Match(html).Groups[1].Value;
        using var paid = await browser.PostAsync(new Uri(new Uri(session.Url), action), null, Emu.Ct);

        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
        Assert.Contains($"href=\"{WebUtility.HtmlEncode(CancelUrl)}\"", html, StringComparison.Ordinal);
        Assert.Contains("29.00 USD", html, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.SeeOther, paid.StatusCode);
        Assert.Equal($"http://127.0.0.1:9/usage?checkout=success&session_id={session.Id}", paid.Headers.Location?.OriginalString);

        var done = await c.V1.Checkout.Sessions.GetAsync(session.Id, cancellationToken: Emu.Ct);
        Assert.Equal(("complete", "paid"), (done.Status, done.PaymentStatus));
        Assert.Null(done.Url);
        Assert.NotNull(done.InvoiceId);
        var sub = await c.V1.Subscriptions.GetAsync(done.SubscriptionId, cancellationToken: Emu.Ct);
        Assert.Equal(("active", cus.Id), (sub.Status, sub.CustomerId));
        Assert.Equal([(plan.Flat.Id, 1L), (plan.Metered.Id, 0L)], sub.Items.Data.Select(i => (i.Price.Id, i.Quantity)));
        Assert.Equal(new Dictionary<string, string> { ["ub_plan"] = "pro" }, sub.Metadata);
        Assert.All(sub.Items.Data, i => Assert.Equal((Emu.T0.UtcDateTime, Emu.T0.AddMonths(1).UtcDateTime), (i.CurrentPeriodStart, i.CurrentPeriodEnd)));
        Assert.Equal(done.InvoiceId, sub.LatestInvoiceId);
        Assert.Equal(2900L, (await c.V1.Invoices.GetAsync(sub.LatestInvoiceId, cancellationToken: Emu.Ct)).AmountPaid);
        Assert.Equal(done.Id, Assert.Single((await c.V1.Checkout.Sessions.ListAsync(new SessionListOptions { Subscription = sub.Id }, cancellationToken: Emu.Ct)).Data).Id);

        // Both webhooks, signed like Stripe's; the subscription event comes first, as with POST /v1/subscriptions.
        var created = await receiver.WaitForAsync(r => TypeOf(r) == "customer.subscription.created");
        var completed = await receiver.WaitForAsync(r => TypeOf(r) == "checkout.session.completed");
        var subEvent = EventUtility.ConstructEvent(created.Body, created.Signature, endpoint.Secret);
        var sessionEvent = EventUtility.ConstructEvent(completed.Body, completed.Signature, endpoint.Secret);
        Assert.Equal(sub.Id, ((Subscription)subEvent.Data.Object).Id);
        var payload = Assert.IsType<Session>(sessionEvent.Data.Object);
        Assert.Equal((session.Id, "complete", sub.Id, cus.Id, "user-42"), (payload.Id, payload.Status, payload.SubscriptionId, payload.CustomerId, payload.ClientReferenceId));
        var order = (await c.V1.Events.ListAsync(cancellationToken: Emu.Ct)).Data.Select(e => e.Type).Reverse().ToList();
        Assert.True(order.IndexOf("customer.subscription.created") < order.IndexOf("checkout.session.completed"), string.Join(", ", order));
        Assert.Single(order, t => t == "checkout.session.completed");

        // Paying twice does nothing more.
        using var again = await browser.PostAsync(new Uri(new Uri(session.Url), action), null, Emu.Ct);
        Assert.Equal(HttpStatusCode.BadRequest, again.StatusCode);
        await Assert.ThrowsAsync<InvalidOperationException>(() => server.Admin.CompleteCheckoutSessionAsync(session.Id, Emu.Ct));
        Assert.Single((await c.V1.Subscriptions.ListAsync(new SubscriptionListOptions { Customer = cus.Id }, cancellationToken: Emu.Ct)).Data);
        using var closed = await browser.GetAsync($"{server.ApiBase}/_emulator/checkout/{session.Id}", Emu.Ct);
        Assert.Contains("data-testid=\"closed\"", await closed.Content.ReadAsStringAsync(Emu.Ct), StringComparison.Ordinal);
    }

    [Fact]
    public async Task AdminApi_CompletesOverHttp_CreatingTheCustomerWhenNoneWasGiven_AndRejectsASecondCompletion()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        using var http = new HttpClient();
        var admin = server.CreateAdminClient(http);
        var plan = await Plans.HybridAsync(c);
        var options = Options(null, plan);
        options.CustomerEmail = "new@example.com";
        var session = await c.V1.Checkout.Sessions.CreateAsync(options, cancellationToken: Emu.Ct);

        var completion = await admin.CompleteCheckoutSessionAsync(session.Id, Emu.Ct);
        var twice = await Assert.ThrowsAsync<HttpRequestException>(() => admin.CompleteCheckoutSessionAsync(session.Id, Emu.Ct));
        var unknown = await Assert.ThrowsAsync<HttpRequestException>(() => admin.CompleteCheckoutSessionAsync("cs_test_missing", Emu.Ct));

        Assert.Null(session.CustomerId);
        Assert.Equal("always", session.CustomerCreation);
        Assert.Equal(session.Id, completion.SessionId);
        Assert.Equal(new Uri($"http://127.0.0.1:9/usage?checkout=success&session_id={session.Id}"), completion.RedirectUrl);
        var customer = await c.V1.Customers.GetAsync(completion.CustomerId, cancellationToken: Emu.Ct);
        Assert.Equal("new@example.com", customer.Email);
        var sub = await c.V1.Subscriptions.GetAsync(completion.SubscriptionId, cancellationToken: Emu.Ct);
        Assert.Equal(customer.Id, sub.CustomerId);
        var done = await c.V1.Checkout.Sessions.GetAsync(session.Id, cancellationToken: Emu.Ct);
        Assert.Equal((customer.Id, sub.Id, "new@example.com"), (done.CustomerId, done.SubscriptionId, done.CustomerDetails.Email));
        Assert.Equal(HttpStatusCode.BadRequest, twice.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        Assert.Single((await c.V1.Subscriptions.ListAsync(cancellationToken: Emu.Ct)).Data);
    }

    [Fact]
    public async Task Expire_EmitsExpiredEvent_AndAnExpiredSessionCannotBePaid()
    {
        var (server, _) = await Emu.StartAsync(o => o.WebhookSignatureClock = WebhookSignatureClock.System);
        await using var _s = server;
        await using var receiver = await WebhookReceiver.StartAsync();
        var c = Emu.Client(server);
        var endpoint = await server.Admin.AddWebhookEndpointAsync(receiver.Url, ["checkout.session.expired"], Emu.Ct);
        var plan = await Plans.HybridAsync(c);
        var cus = await Emu.CustomerAsync(c);
        var session = await c.V1.Checkout.Sessions.CreateAsync(Options(cus.Id, plan), cancellationToken: Emu.Ct);

        var expired = await c.V1.Checkout.Sessions.ExpireAsync(session.Id, cancellationToken: Emu.Ct);
        var again = await Assert.ThrowsAsync<StripeException>(() => c.V1.Checkout.Sessions.ExpireAsync(session.Id, cancellationToken: Emu.Ct));
        using var browser = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false });
        using var pay = await browser.PostAsync(new Uri(session.Url), null, Emu.Ct);

        Assert.Equal("expired", expired.Status);
        Assert.Null(expired.Url);
        Assert.Null(expired.SubscriptionId);
        Assert.Equal(HttpStatusCode.BadRequest, again.HttpStatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, pay.StatusCode);
        await Assert.ThrowsAsync<InvalidOperationException>(() => server.Admin.CompleteCheckoutSessionAsync(session.Id, Emu.Ct));
        Assert.Empty((await c.V1.Subscriptions.ListAsync(cancellationToken: Emu.Ct)).Data);
        Assert.Equal(session.Id, Assert.Single((await c.V1.Checkout.Sessions.ListAsync(new SessionListOptions { Status = "expired" }, cancellationToken: Emu.Ct)).Data).Id);

        var delivered = await receiver.WaitForAsync(r => TypeOf(r) == "checkout.session.expired");
        var evt = EventUtility.ConstructEvent(delivered.Body, delivered.Signature, endpoint.Secret);
        Assert.Equal((session.Id, "expired"), (((Session)evt.Data.Object).Id, ((Session)evt.Data.Object).Status));
    }

    [Fact]
    public async Task OpenSession_ExpiresOnItsOwnAtExpiresAt()
    {
        var (server, time) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var plan = await Plans.HybridAsync(c);
        var cus = await Emu.CustomerAsync(c);
        var options = Options(cus.Id, plan);
        options.ExpiresAt = Emu.T0.AddHours(1).UtcDateTime;
        var session = await c.V1.Checkout.Sessions.CreateAsync(options, cancellationToken: Emu.Ct);

        time.Advance(TimeSpan.FromMinutes(59));
        var stillOpen = await c.V1.Checkout.Sessions.GetAsync(session.Id, cancellationToken: Emu.Ct);
        time.Advance(TimeSpan.FromMinutes(1));
        var expired = await c.V1.Checkout.Sessions.GetAsync(session.Id, cancellationToken: Emu.Ct);

        Assert.Equal(("open", "expired"), (stillOpen.Status, expired.Status));
        var evt = Assert.Single((await c.V1.Events.ListAsync(new EventListOptions { Type = "checkout.session.expired" }, cancellationToken: Emu.Ct)).Data);
        Assert.Equal(Emu.T0.AddHours(1).UtcDateTime, evt.Created);
        await Assert.ThrowsAsync<InvalidOperationException>(() => server.Admin.CompleteCheckoutSessionAsync(session.Id, Emu.Ct));
    }

    [Fact]
    public async Task HostedPage_UnknownSession_Is404()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        using var browser = new HttpClient();

        using var get = await browser.GetAsync($"{server.ApiBase}/_emulator/checkout/cs_test_missing", Emu.Ct);
        using var post = await browser.PostAsync($"{server.ApiBase}/_emulator/checkout/cs_test_missing", null, Emu.Ct);

        Assert.Equal((HttpStatusCode.NotFound, HttpStatusCode.NotFound), (get.StatusCode, post.StatusCode));
    }

    [Fact]
    public async Task StateFile_KeepsSessions()
    {
        var file = Path.Combine(Path.GetTempPath(), $"stripe-emulator-{Guid.NewGuid():N}.json");
        try
        {
            var (first, time) = await Emu.StartAsync(o => o.StateFilePath = file);
            string sessionId;
            await using (first)
            {
                var c = Emu.Client(first);
                var plan = await Plans.HybridAsync(c);
                var cus = await Emu.CustomerAsync(c);
                sessionId = (await c.V1.Checkout.Sessions.CreateAsync(Options(cus.Id, plan), cancellationToken: Emu.Ct)).Id;
            }

            var second = await StripeEmulatorServer.StartAsync(new StripeEmulatorOptions { TimeProvider = time, StateFilePath = file }, Emu.Ct);
            await using (second)
            {
                var completion = await second.Admin.CompleteCheckoutSessionAsync(sessionId, Emu.Ct);
                var session = await Emu.Client(second).V1.Checkout.Sessions.GetAsync(sessionId, cancellationToken: Emu.Ct);
                var lines = await Emu.Client(second).V1.Checkout.Sessions.LineItems.ListAsync(sessionId, cancellationToken: Emu.Ct);

                Assert.Equal(("complete", completion.SubscriptionId), (session.Status, session.SubscriptionId));
                Assert.Equal(2, lines.Data.Count);
                Assert.Equal("pro", (await Emu.Client(second).V1.Subscriptions.GetAsync(completion.SubscriptionId, cancellationToken: Emu.Ct)).Metadata["ub_plan"]);
            }
        }
        finally
        {
            System.IO.File.Delete(file);
        }
    }

    [GeneratedRegex("<form method=\"post\" action=\"([^\"]+)\"")]
    private static partial Regex FormAction();
}
