using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.TestHost;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Stripe.Billing;
using UsageBilling.StripeEmulator.Admin;
using UsageBilling.Web.Tests.Infrastructure;
using static Microsoft.Playwright.Assertions;

namespace UsageBilling.Web.Tests;

/// <summary>The wall clock plus an offset the test moves forward: the app and its in-process emulator share it, timers keep running.</summary>
public sealed class OffsetClock : TimeProvider
{
    private long _offsetTicks;

    /// <inheritdoc/>
    public override DateTimeOffset GetUtcNow() => System.GetUtcNow().AddTicks(Interlocked.Read(ref _offsetTicks));

    public void Advance(TimeSpan by) => Interlocked.Add(ref _offsetTicks, by.Ticks);
}

/// <summary>The browser app on a clock the tests can move past a period end.</summary>
public sealed class ClockedBrowserWebApp() : WebApp(Provider.Sqlite, kestrel: true)
{
    public OffsetClock Clock { get; } = new();

    protected override void ConfigureSettings(IWebHostBuilder builder)
    {
        builder.UseSetting("App:InvoiceLookupTimeout", "00:00:02");
        builder.ConfigureTestServices(s => s.AddSingleton<TimeProvider>(Clock));
    }
}

/// <summary>
/// Past billing periods on the usage page: this app's total beside the quantity on Stripe's invoice (Stripe.net
/// against the emulator), differences flagged, and local totals only when Stripe does not answer in time.
/// </summary>
public sealed class PastPeriodsTests(ClockedBrowserWebApp app) : IClassFixture<ClockedBrowserWebApp>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task PastPeriod_ShowsItsPaidInvoice_AndFlagsUsageStripeHasButThisAppDoesNot()
    {
        await using var browser = await Browser.StartAsync(app.BaseUrl);
        var (email, userId) = await SignUpOnTinyAsync(browser);
        await app.Services.GetRequiredService<IUsageRecorder>().RecordAsync(userId, "ai_messages", 3, "past-1", cancellationToken: Ct);
        Assert.Equal(1, (await app.Services.GetRequiredService<IUsageFlusher>().FlushCustomerAsync(userId, Ct)).ReportsSent);

        // Usage that reached Stripe without passing through this app (another system, a manual event): 4 more.
        var customer = await CustomerAsync(userId);
        await new MeterEventService(app.StripeClient).CreateAsync(new MeterEventCreateOptions
        {
            EventName = "ai_messages",
            Identifier = $"outside-{Guid.NewGuid():N}",
            Payload = new Dictionary<string, string> { ["stripe_customer_id"] = customer, ["value"] = "4" },
        }, cancellationToken: Ct);
        var period = await CurrentPeriodAsync(userId);

        // Past the period end and Stripe's grace hour: the cycle invoice is finalized and paid.
        app.Clock.Advance(period.End - app.Clock.GetUtcNow() + TimeSpan.FromHours(2));
        await SignInAgainAsync(browser, email);

        var row = browser.Page.Locator($"[data-testid='past-period'][data-start='{period.Start.ToUnixTimeSeconds()}']");
        await Expect(row).ToHaveCountAsync(1);
        await Expect(row.GetByTestId("local-total")).ToHaveTextAsync("3");
        await Expect(row.GetByTestId("invoiced-quantity")).ToContainTextAsync("7");
        await Expect(row.GetByTestId("difference")).ToHaveTextAsync("⚠ differs by +4: Stripe invoiced 7, this app recorded 3");
        await Expect(row.GetByTestId("invoice-status")).ToHaveTextAsync("paid");
        await Expect(row.GetByTestId("invoice-total")).ToHaveTextAsync("6.00 USD"); // next period's 5.00 flat fee + 2 over the allowance at 0.50
        await Expect(browser.Page.GetByTestId("invoices-unavailable")).ToHaveCountAsync(0);
        var number = await row.GetByTestId("invoice-link").TextContentAsync();
        var href = await row.GetByTestId("invoice-link").GetAttributeAsync("href");
        Assert.Matches("^[0-9A-F]{8}-0002$", number);
        Assert.StartsWith(app.Stripe.Emulator!.ApiBase + "/_emulator/invoices/in_", href, StringComparison.Ordinal);
        await browser.ScreenshotAsync("usage-past-periods.png");

        // The link is the hosted invoice page, with the same number.
        await browser.Page.GotoAsync(href!);
        await Expect(browser.Page.GetByTestId("number")).ToHaveTextAsync(number!);
    }

    [Fact]
    public async Task StripeTooSlow_PageShowsLocalTotalsAndSaysInvoicesAreUnavailable()
    {
        await using var browser = await Browser.StartAsync(app.BaseUrl);
        var (email, userId) = await SignUpOnTinyAsync(browser);
        await app.Services.GetRequiredService<IUsageRecorder>().RecordAsync(userId, "ai_messages", 2, "slow-1", cancellationToken: Ct);
        var period = await CurrentPeriodAsync(userId);
        app.Clock.Advance(period.End - app.Clock.GetUtcNow() + TimeSpan.FromHours(2));
        await SignInAgainAsync(browser, email, landing: "/plans");
        await app.Stripe.Emulator!.Admin.InjectFaultAsync(new FaultSpec("/v1/invoices", FaultKind.Delay, Count: 1, DelayMilliseconds: 15_000), Ct);

        var started = DateTimeOffset.UtcNow;
        await browser.Page.GotoAsync("/usage");
        var elapsed = DateTimeOffset.UtcNow - started;

        var row = browser.Page.Locator($"[data-testid='past-period'][data-start='{period.Start.ToUnixTimeSeconds()}']");
        await Expect(browser.Page.GetByTestId("invoices-unavailable")).ToHaveTextAsync("Stripe's invoices are unavailable right now; the totals below are this app's own records.");
        await Expect(row.GetByTestId("local-total")).ToHaveTextAsync("2");
        await Expect(row.GetByTestId("invoiced-quantity")).ToHaveTextAsync("unavailable");
        Assert.True(elapsed < TimeSpan.FromSeconds(12), $"The page waits for the 2 s timeout, not for Stripe's 15 s: it took {elapsed}.");
        await browser.ScreenshotAsync("usage-past-periods-unavailable.png");
        await app.Stripe.Emulator.Admin.ClearFaultsAsync(Ct);
    }

    private async Task<(string Email, Guid UserId)> SignUpOnTinyAsync(Browser browser)
    {
        var email = $"past-{Guid.NewGuid():N}@example.com";
        var page = browser.Page;
        await page.GotoAsync("/account/register");
        await SignUpPage.SignUpAsync(page, email);
        await page.GetByTestId("choose-tiny").ClickAsync();
        await Expect(page.GetByTestId("current-plan")).ToHaveTextAsync("Tiny");
        await using var db = app.CreateDbContext();
        return (email, (await db.Users.SingleAsync(u => u.Email == email, Ct)).Id);
    }

    /// <summary>A month later the sign-in cookie has expired: sign in again, landing on <paramref name="landing"/>.</summary>
    private static async Task SignInAgainAsync(Browser browser, string email, string landing = "/usage")
    {
        var page = browser.Page;
        await page.Context.ClearCookiesAsync();
        await page.GotoAsync("/account/login?ReturnUrl=" + Uri.EscapeDataString(landing));
        await page.GetByTestId("email").FillAsync(email);
        await page.GetByTestId("password").FillAsync("correct-horse-1");
        await page.GetByTestId("login").ClickAsync();
        await PageLanding.WaitAsync(page, landing, "Signing in again");
    }

    private async Task<string> CustomerAsync(Guid userId)
    {
        await using var db = app.CreateDbContext();
        return (await db.BillingCustomers.SingleAsync(c => c.UserId == userId, Ct)).StripeCustomerId;
    }

    private async Task<BillingPeriod> CurrentPeriodAsync(Guid userId)
    {
        var meter = (await app.Services.GetRequiredService<IUsageSummaryService>().GetCurrentPeriodAsync(userId, Ct)).Meters.Single(m => m.Meter == "ai_messages");
        return new BillingPeriod(meter.PeriodStart, meter.PeriodEnd);
    }
}
