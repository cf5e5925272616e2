using Microsoft.Playwright;
using UsageBilling.Web.Tests.Infrastructure;
using static Microsoft.Playwright.Assertions;

namespace UsageBilling.Web.Tests;

/// <summary>
/// The customer's path in a real browser (Debian's Chromium driven by Playwright, never a
/// downloaded browser) against the app on a real 127.0.0.1 socket.
/// </summary>
public sealed class BrowserTests(BrowserWebApp app) : IClassFixture<BrowserWebApp>
{
    private static readonly string[] ChromiumArgs =
        ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"];

    [Fact]
    public async Task SignUpChoosePlanAndUseAssistant_UsagePageTracksProgressAndWarnsAt80Percent()
    {
        var chromium = Environment.GetEnvironmentVariable("USAGEBILLING_CHROMIUM") ?? "/usr/bin/chromium";
        Assert.True(File.Exists(chromium), $"Chromium not found at '{chromium}': install Debian's chromium (scripts/test.sh does) or set USAGEBILLING_CHROMIUM.");
        using var playwright = await Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(new() { ExecutablePath = chromium, Headless = true, Args = ChromiumArgs });
        var page = await browser.NewPageAsync(new() { BaseURL = app.BaseUrl, ViewportSize = new() { Width = 1100, Height = 1000 } });

        // Sign up, then pick the plan with a 5-message allowance.
        await page.GotoAsync("/account/register");
        await SignUpPage.SignUpAsync(page, $"browser-{Guid.NewGuid():N}@example.com");
        await page.GetByTestId("choose-tiny").ClickAsync();
        await Expect(page.GetByTestId("current-plan")).ToHaveTextAsync("Tiny");

        // Use the assistant: the bar follows each message and turns amber at 4 of 5 (80 %).
        for (var i = 1; i <= 4; i++)
        {
            await page.GotoAsync("/assistant");
            await page.GetByTestId("message").FillAsync($"Question number {i}?");
            await page.GetByTestId("send").ClickAsync();
            await Expect(page.GetByTestId("assistant-reply")).ToContainTextAsync("42");
            await Expect(page.GetByTestId("used-ai_messages")).ToHaveTextAsync(i.ToString(System.Globalization.CultureInfo.InvariantCulture));
            await Expect(page.GetByTestId("usage-bar-ai_messages")).ToHaveAttributeAsync("data-level", i < 4 ? "ok" : "warn");
        }

        await page.GotoAsync("/usage");
        await Expect(page.GetByTestId("used-ai_messages")).ToHaveTextAsync("4");
        await Expect(page.GetByTestId("remaining-ai_messages")).ToHaveTextAsync("1");
        await Expect(page.GetByTestId("usage-bar-ai_messages")).ToHaveAttributeAsync("data-level", "warn");
        await Expect(page.GetByTestId("warning-ai_messages")).ToContainTextAsync("80%");
        await Expect(page.GetByTestId("projected-total")).ToHaveTextAsync("5.00 USD");
        await Expect(page.GetByTestId("pending-ai_messages")).ToHaveTextAsync("4");
        await Expect(page.Locator("[data-testid='chart-ai_messages'] rect.bar")).Not.ToHaveCountAsync(0);
        var fill = await page.Locator("[data-testid='usage-bar-ai_messages'] .usage-bar-fill").EvaluateAsync<string>("e => getComputedStyle(e).backgroundColor");
        Assert.Equal("rgb(249, 168, 37)", fill);

        // 4 of 5 included: the fill spans 80 % of the track, with the CSP (no inline styles) in force.
        var ratio = await page.Locator("[data-testid='usage-bar-ai_messages'] .usage-bar-fill").EvaluateAsync<double>("e => e.getBoundingClientRect().width / e.parentElement.getBoundingClientRect().width");
        Assert.InRange(ratio, 0.79, 0.81);

        var screenshot = await page.ScreenshotAsync(new() { FullPage = true });
        var path = Path.Combine(ArtifactsFolder(), "usage-page.png");
        await File.WriteAllBytesAsync(path, screenshot, TestContext.Current.CancellationToken);
        TestContext.Current.AddAttachment("usage-page.png", screenshot, "image/png");
        TestContext.Current.SendDiagnosticMessage($"Usage page screenshot: {path}");
    }

    /// <summary><c>artifacts/browser</c> at the repository root (ignored by git), or beside the test binaries.</summary>
    private static string ArtifactsFolder()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "UsageBilling.slnx")))
        {
            dir = dir.Parent;
        }

        var folder = Path.Combine(dir?.FullName ?? AppContext.BaseDirectory, "artifacts", "browser");
        Directory.CreateDirectory(folder);
        return folder;
    }
}
